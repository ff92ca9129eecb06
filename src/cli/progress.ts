import { createRequire } from 'node:module';
import type cliProgress from 'cli-progress';
import { bytes, duration } from '../format.ts';

/** What a bar counts: bytes, and files (out of `files` when the total is known up front). */
interface ProgressTotal {
  bytes: number;
  files?: number;
}

/** Seconds left, as a person reads them: "7s", "2m05s", "1h10m". */
function etaText(seconds: number): string {
  return seconds < 60 ? `${Math.ceil(seconds)}s` : duration(seconds * 1000);
}

/**
 * The bar's changing fields, from the bytes done, the bytes in all and the seconds since the
 * start. Never NaN or Infinity: before the first byte (or the first tick of the clock) there is
 * no rate to go by, and rate and ETA say "-".
 */
export function progressFields(done: number, total: number, seconds: number) {
  const speed = seconds > 0 && done > 0 ? done / seconds : 0;
  return {
    percent: total > 0 ? Math.min(100, Math.floor((done * 100) / total)) : done > 0 ? 100 : 0,
    done: bytes(done),
    rate: speed > 0 ? `${bytes(speed)}/s` : '-',
    eta: speed > 0 ? etaText(Math.max(total - done, 0) / speed) : '-',
  };
}

/**
 * A progress bar on stderr (files, bytes, rate, ETA) when stderr is a terminal and output is
 * for a person; otherwise every call is a no-op.
 */
export class Progress {
  private bar: cliProgress.SingleBar | undefined;
  private readonly t0 = performance.now();
  private readonly total: ProgressTotal;

  constructor(enabled: boolean, label: string, total: number | ProgressTotal) {
    this.total = typeof total === 'number' ? { bytes: total } : total;
    if (!enabled || !process.stderr.isTTY) return;
    const files = this.total.files === undefined ? '{files} files' : `{files} of ${this.total.files} files`;
    // Loaded only for a bar on a terminal: its 16 modules are start-up time every other run pays.
    const bars = createRequire(import.meta.url)('cli-progress') as typeof cliProgress;
    // The fields are computed here (progressFields), not by cli-progress, whose ETA reads "NULL"
    // or "INF" before the first byte.
    this.bar = new bars.SingleBar(
      {
        stream: process.stderr,
        format: `${label} {bar} {pct}% | ${files} | {done} of {total_h} | {rate} | ETA {eta_h}`,
        hideCursor: true,
        clearOnComplete: true,
        fps: 5,
      },
      bars.Presets.shades_classic,
    );
    this.bar.start(Math.max(this.total.bytes, 1), 0, { files: 0, total_h: bytes(this.total.bytes), ...this.fields(0) });
  }

  private fields(done: number) {
    const f = progressFields(done, this.total.bytes, (performance.now() - this.t0) / 1000);
    return { pct: f.percent, done: f.done, rate: f.rate, eta_h: f.eta };
  }

  update(done: number, files: number): void {
    this.bar?.update(done, { files, ...this.fields(done) });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
