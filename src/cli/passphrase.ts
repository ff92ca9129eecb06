import * as fs from 'node:fs';
import type { ResolvedConfig } from '../config/config.ts';
import { DEFAULT_KDF, type Kdf, kdfMemory, MAX_KDF_MEMORY } from '../crypto/keys.ts';
import { S3BackupError, UsageError } from '../errors.ts';

/**
 * Where the passphrase of an encrypted repository comes from, highest first: --password-file,
 * S3BACKUP_PASSWORD, the config's passwordFile (or S3BACKUP_PASSWORD_FILE), else a prompt when
 * stdin is a terminal. It is never printed, logged, or put in an error message.
 */
export function passphraseSource(
  flagFile: string | undefined,
  cfg: ResolvedConfig,
): { passphrase?: string; prompt?: () => Promise<string> } {
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
    throw new UsageError(
      `cannot read the password file given by ${what} (${file}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const first = text.split(/\r?\n/, 1)[0] ?? '';
  if (first === '') throw new UsageError(`the password file ${file} (${what}) is empty`, { hint: 'put the passphrase on its first line' });
  return first;
}

const MIN_SCRYPT_N = 2 ** 14;
/** The largest N whose lanes stay within what opening accepts (MAX_KDF_MEMORY): 2^19 for two lanes of r = 8. */
const MAX_SCRYPT_N = MAX_KDF_MEMORY / kdfMemory({ ...DEFAULT_KDF, N: 1 });

export const SCRYPT_N_HELP = `scrypt cost N of each of the new passphrase key's ${DEFAULT_KDF.lanes} lanes (a power of two; default ${DEFAULT_KDF.N}: ${kdfMemory(DEFAULT_KDF) / 2 ** 20} MiB, ~0.2 s on two cores)`;

/** --scrypt-n: scrypt's cost N for each lane of a new passphrase key (see DEFAULT_KDF), a power of two. */
export function parseScryptN(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < MIN_SCRYPT_N || n > MAX_SCRYPT_N || (n & (n - 1)) !== 0) {
    throw new UsageError(`--scrypt-n must be a power of two from ${MIN_SCRYPT_N} to ${MAX_SCRYPT_N}, not ${v}`, {
      hint: `N is per lane: ${DEFAULT_KDF.lanes} lanes of ${MAX_SCRYPT_N} take ${MAX_KDF_MEMORY / 2 ** 20} MiB at once, the most a key may; the default, ${DEFAULT_KDF.N}, takes ${kdfMemory(DEFAULT_KDF) / 2 ** 20} MiB`,
    });
  }
  return n;
}

/** The default passphrase derivation with another N (--scrypt-n). */
export function kdfWithN(N: number): Kdf {
  return { ...DEFAULT_KDF, N };
}

/** A passphrase key's derivation in words, for `key list`: "scrypt 2 lanes N=2^16 r=8" (lanes: this format), "scrypt N=2^17 r=8 p=1" (earlier). */
export function kdfText(kdf: Kdf): string {
  const n = Number.isInteger(Math.log2(kdf.N)) ? `2^${Math.log2(kdf.N)}` : String(kdf.N);
  return kdf.name === 'scrypt' ? `scrypt N=${n} r=${kdf.r} p=${kdf.p}` : `scrypt ${kdf.lanes} lanes N=${n} r=${kdf.r}`;
}

/** A key file's derivation parameters, as `key list --json` shows them (the salt left out). */
export function kdfParams(kdf: Kdf): Kdf {
  return kdf.name === 'scrypt'
    ? { name: kdf.name, N: kdf.N, r: kdf.r, p: kdf.p }
    : { name: kdf.name, N: kdf.N, r: kdf.r, lanes: kdf.lanes };
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
