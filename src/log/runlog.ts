import * as fs from 'node:fs';
import * as path from 'node:path';
import { displayName } from '../archive/names.ts';

/**
 * Appends timestamped lines to <dir>/backup.log (everything) and <dir>/backup-errors.log
 * (warnings and errors). Logging never fails a run: if the directory cannot be written, one
 * notice goes to stderr and the run goes on.
 */
export class RunLog {
  readonly dir: string;
  private broken = false;
  private readonly command: string;

  constructor(dir: string, command: string) {
    this.dir = dir;
    this.command = command;
  }

  get file(): string {
    return path.join(this.dir, 'backup.log');
  }

  get errorFile(): string {
    return path.join(this.dir, 'backup-errors.log');
  }

  info(msg: string): void {
    this.write('INFO', msg, false);
  }

  warn(msg: string): void {
    this.write('WARN', msg, true);
  }

  error(msg: string): void {
    this.write('ERROR', msg, true);
  }

  private write(level: string, msg: string, alsoErrors: boolean): void {
    if (this.broken) return;
    const line = `${new Date().toISOString()} ${level.padEnd(5)} [${this.command} pid ${process.pid}] ${displayName(msg).replace(/\n/g, ' ')}\n`;
    try {
      fs.mkdirSync(this.dir, { recursive: true });
      fs.appendFileSync(this.file, line);
      if (alsoErrors) fs.appendFileSync(this.errorFile, line);
    } catch (e) {
      this.broken = true;
      process.stderr.write(`s3backup: warning: cannot write logs to ${this.dir} (${(e as Error).message}); continuing without them\n`);
    }
  }
}
