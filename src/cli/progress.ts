import cliProgress from 'cli-progress';
import { bytes } from '../format.ts';

/**
 * A progress bar on stderr (files, bytes, rate, ETA) when stderr is a terminal and output is
 * for a person; otherwise every call is a no-op.
 */
export class Progress {
  private bar: cliProgress.SingleBar | undefined;
  private readonly t0 = performance.now();

  constructor(enabled: boolean, label: string, total: number) {
    if (!enabled || !process.stderr.isTTY) return;
    this.bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: `${label} {bar} {percentage}% | {files} files | {done} of {total_h} | {rate} | ETA {eta_formatted}`,
        hideCursor: true,
        clearOnComplete: true,
        etaBuffer: 50,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(Math.max(total, 1), 0, { files: 0, done: bytes(0), total_h: bytes(total), rate: '-' });
  }

  update(done: number, files: number): void {
    if (!this.bar) return;
    const s = (performance.now() - this.t0) / 1000;
    this.bar.update(done, { files, done: bytes(done), rate: s > 0 ? `${bytes(done / s)}/s` : '-' });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
