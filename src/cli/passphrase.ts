import * as fs from 'node:fs';
import type { ResolvedConfig } from '../config/config.ts';
import { S3BackupError, UsageError } from '../errors.ts';

/**
 * Where the passphrase of an encrypted repository comes from, highest first: --password-file,
 * S3BACKUP_PASSWORD, the config's passwordFile (or S3BACKUP_PASSWORD_FILE), else a prompt when
 * stdin is a terminal. It is never printed, logged, or put in an error message.
 */
export function passphraseSource(flagFile: string | undefined, cfg: ResolvedConfig): { passphrase?: string; prompt?: () => Promise<string> } {
  if (flagFile) return { passphrase: readPasswordFile(flagFile, '--password-file') };
  const env = process.env.S3BACKUP_PASSWORD;
  if (env !== undefined && env !== '') return { passphrase: env };
  if (cfg.passwordFile) return { passphrase: readPasswordFile(cfg.passwordFile, 'passwordFile') };
  if (process.stdin.isTTY) return { prompt: () => promptHidden('passphrase for the repository: ') };
  return {};
}

/** The passphrase for a new key (init, key add): from its own file or variable, else asked twice on a terminal. */
export async function newPassphrase(file: string | undefined, envName: string, what: string): Promise<string> {
  if (file) return readPasswordFile(file, what);
  const env = process.env[envName];
  if (env !== undefined && env !== '') return env;
  if (!process.stdin.isTTY) {
    throw new UsageError('no passphrase for the new key', { hint: `set ${envName}, use ${what} FILE, or run on a terminal to be asked` });
  }
  const a = await promptHidden('new passphrase: ');
  const b = await promptHidden('repeat the new passphrase: ');
  if (a !== b) throw new UsageError('the two passphrases differ; nothing was changed');
  return a;
}

export function readPasswordFile(file: string, what: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read the password file given by ${what} (${file}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const first = text.split(/\r?\n/, 1)[0] ?? '';
  if (first === '') throw new UsageError(`the password file ${file} (${what}) is empty`, { hint: 'put the passphrase on its first line' });
  return first;
}

/** --scrypt-n: scrypt's cost N for a new passphrase key (memory 128·N·8 bytes), a power of two. */
export function parseScryptN(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 2 ** 14 || n > 2 ** 22 || (n & (n - 1)) !== 0) {
    throw new UsageError(`--scrypt-n must be a power of two from 16384 to 4194304, not ${v}`, { hint: 'the default, 131072, takes about 0.5 s and 128 MiB' });
  }
  return n;
}

/** Read a line from the terminal without echoing it. */
export function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  return new Promise((resolve, reject) => {
    let s = '';
    const done = () => {
      stdin.off('data', onData);
      if (stdin.isTTY) stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: Buffer | string) => {
      for (const c of chunk.toString()) {
        if (c === '\r' || c === '\n') {
          done();
          resolve(s);
          return;
        }
        if (c === '\u0003' || c === '\u0004') {
          done();
          reject(new S3BackupError('no passphrase given (interrupted)'));
          return;
        }
        if (c === '\u007f' || c === '\b') s = s.slice(0, -1);
        else s += c;
      }
    };
    if (stdin.isTTY) stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}
