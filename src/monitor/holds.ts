import * as os from 'node:os';
import { z } from 'zod';
import { AlreadyExistsError, NotFoundError, S3BackupError } from '../errors.ts';
import type { HistoryCrypto } from '../repo/repository.ts';
import { getBuffer, type Store } from '../store/store.ts';
import type { AnomalyFinding, RetentionHold, RunRecord } from './types.ts';

/**
 * Anomaly holds (docs/anomaly-detection.md "Anomaly hold"): a backup with a ransomware-class
 * finding suspends retention for its host and sources until someone acknowledges it, so the
 * last clean backups outlive an attack nobody read the alert for.
 *
 *   history/holds/<backup id>.json       the hold, written create-only by the backup
 *   history/holds/<backup id>.ack.json   its acknowledgement (`s3backup anomalies ack ID`)
 *
 * Both are create-only and never deleted (a record of who lifted which hold and when), and
 * sealed like run records in an encrypted repository. They live under history/, which forget
 * and prune never touch.
 */
export const HOLDS = 'history/holds/';
const ACK = '.ack.json';

const HoldSchema = z.object({
  backupId: z.string().min(1),
  time: z.string(),
  host: z.string(),
  sources: z.array(z.string()),
  sourceKey: z.string(),
  reasons: z.array(z.string()),
});
const AckSchema = z.object({ backupId: z.string().min(1), time: z.string(), by: z.string() });

export interface HoldState {
  hold: RetentionHold;
  /** Set once acknowledged: when and by whom (user@host). */
  acknowledged?: { time: string; by: string };
}

function holdKey(backupId: string, crypto: HistoryCrypto | undefined, ack = false): string {
  return `${HOLDS}${backupId.replace(/[^A-Za-z0-9._-]+/g, '_')}${ack ? ACK : '.json'}${crypto?.suffix ?? ''}`;
}

/** The hold a backup's findings call for: some ransomware-class finding, else none. */
export function holdFor(record: RunRecord, findings: readonly AnomalyFinding[]): RetentionHold | undefined {
  const reasons = findings.filter((f) => f.ransomware).map((f) => `${f.metric}: ${f.message}`);
  if (!reasons.length) return undefined;
  return { backupId: record.id, time: record.time, host: record.host, sources: record.sources, sourceKey: record.sourceKey, reasons };
}

async function put(store: Store, key: string, doc: unknown, crypto: HistoryCrypto | undefined): Promise<void> {
  const plain = Buffer.from(`${JSON.stringify(doc)}\n`);
  try {
    await store.put(key, crypto ? crypto.seal(key, plain) : plain, {
      createOnly: true,
      contentType: crypto ? 'application/octet-stream' : 'application/json',
    });
  } catch (e) {
    // The same hold or acknowledgement written twice (a retry) keeps the first.
    if (!(e instanceof AlreadyExistsError)) throw e;
  }
}

/** Record a hold (create-only; a second write of the same hold keeps the first). */
export function placeHold(store: Store, hold: RetentionHold, crypto?: HistoryCrypto): Promise<void> {
  return put(store, holdKey(hold.backupId, crypto), hold, crypto);
}

/**
 * Every hold in the repository with its acknowledgement, oldest first. An object that cannot be
 * read or is not a hold is reported and skipped (as a hold it would block retention forever).
 */
export async function readHolds(store: Store, crypto?: HistoryCrypto, onWarning: (m: string) => void = () => {}): Promise<HoldState[]> {
  const suffix = crypto?.suffix ?? '';
  const holds = new Map<string, HoldState>();
  const acks = new Map<string, { time: string; by: string }>();
  const keys: string[] = [];
  for await (const o of store.list(HOLDS)) if (o.key.endsWith(`.json${suffix}`)) keys.push(o.key);
  for (const key of keys.sort()) {
    const doc = await readDoc(store, key, crypto, onWarning);
    if (doc === undefined) continue;
    const isAck = key.endsWith(`${ACK}${suffix}`);
    const parsed = isAck ? AckSchema.safeParse(doc) : HoldSchema.safeParse(doc);
    if (!parsed.success) {
      onWarning(`${store.location}/${key} is not a valid anomaly hold; skipped`);
      continue;
    }
    if (isAck) {
      const a = parsed.data as z.infer<typeof AckSchema>;
      acks.set(a.backupId, { time: a.time, by: a.by });
    } else {
      const h = parsed.data as RetentionHold;
      holds.set(h.backupId, { hold: h });
    }
  }
  for (const [id, ack] of acks) {
    const state = holds.get(id);
    if (state) state.acknowledged = ack;
  }
  return [...holds.values()].sort((a, b) => (a.hold.time < b.hold.time ? -1 : a.hold.time > b.hold.time ? 1 : 0));
}

async function readDoc(store: Store, key: string, crypto: HistoryCrypto | undefined, warn: (m: string) => void): Promise<unknown> {
  let buf: Buffer;
  try {
    buf = await getBuffer(store, key);
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
  try {
    return JSON.parse((crypto ? crypto.open(key, buf) : buf).toString('utf8'));
  } catch {
    warn(`${store.location}/${key} cannot be read as an anomaly hold (damaged, or sealed by another key); skipped`);
    return undefined;
  }
}

/** The holds not yet acknowledged. */
export function activeHolds(states: readonly HoldState[]): RetentionHold[] {
  return states.filter((s) => !s.acknowledged).map((s) => s.hold);
}

/** Whether a backup of `host` and `sources` is held by one of `holds`. */
export function heldBy(holds: readonly RetentionHold[], host: string, sources: readonly string[]): RetentionHold | undefined {
  const key = JSON.stringify([...sources].sort());
  return holds.find((h) => h.host === host && JSON.stringify([...h.sources].sort()) === key);
}

/**
 * Acknowledge the hold of backup `ref` (its id or a unique start of it): retention of its group
 * resumes unless another hold is still open. Returns the hold and whether it was open.
 */
export async function acknowledgeHold(
  store: Store,
  ref: string,
  crypto?: HistoryCrypto,
  onWarning?: (m: string) => void,
): Promise<{ hold: RetentionHold; wasOpen: boolean }> {
  const states = await readHolds(store, crypto, onWarning);
  const matches = states.filter((s) => s.hold.backupId === ref || s.hold.backupId.startsWith(ref));
  const exact = matches.find((s) => s.hold.backupId === ref);
  const state = exact ?? (matches.length === 1 ? matches[0] : undefined);
  if (!state) {
    const open = activeHolds(states).map((h) => h.backupId);
    throw new S3BackupError(matches.length > 1 ? `"${ref}" matches ${matches.length} holds` : `no anomaly hold for backup "${ref}"`, {
      hint: open.length ? `open holds: ${open.join(', ')}` : 'no retention hold is open in this repository',
    });
  }
  if (state.acknowledged) return { hold: state.hold, wasOpen: false };
  const by = `${safeUser()}@${os.hostname()}`;
  await put(
    store,
    holdKey(state.hold.backupId, crypto, true),
    { backupId: state.hold.backupId, time: new Date().toISOString(), by },
    crypto,
  );
  return { hold: state.hold, wasOpen: true };
}

function safeUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}
