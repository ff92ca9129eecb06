// Worker side of FileHasher: SHA-256 of file contents straight out of the shared frame
// buffers, off the main thread.
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

interface FrameJob {
  kind: 'frame';
  id: number;
  frame: SharedArrayBuffer;
  /** Flattened [op, seq, start, end]: op 0 = update seq with frame[start,end), 1 = digest seq. */
  ops: Float64Array;
}

const files = new Map<number, Hash>();

parentPort!.on('message', (job: FrameJob) => {
  const view = new Uint8Array(job.frame);
  const digests: [number, string][] = [];
  const ops = job.ops;
  for (let i = 0; i < ops.length; i += 4) {
    const seq = ops[i + 1]!;
    let h = files.get(seq);
    if (!h) {
      h = createHash('sha256');
      files.set(seq, h);
    }
    if (ops[i] === 0) h.update(view.subarray(ops[i + 2]!, ops[i + 3]!));
    else {
      digests.push([seq, h.digest('hex')]);
      files.delete(seq);
    }
  }
  parentPort!.postMessage({ kind: 'frame', id: job.id, digests });
});
