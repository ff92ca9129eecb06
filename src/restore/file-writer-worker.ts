// Writer thread of FileWriter: writes each batch it is sent (file-batch.ts) and sends the
// buffers back for the next one; after an error it writes nothing more.
import { parentPort } from 'node:worker_threads';
import type { Batch } from './file-writer.ts';
import { writeBatch } from './file-batch.ts';

let failed = false;

parentPort!.on('message', (batch: Batch) => {
  if (failed) return;
  const reply = writeBatch(batch);
  if (reply.kind === 'error') {
    failed = true;
    parentPort!.postMessage(reply);
    return;
  }
  // The buffers go back to the main thread for the next batch.
  parentPort!.postMessage(reply, [reply.buffer, reply.fields]);
});
