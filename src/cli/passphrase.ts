import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { ResolvedConfig } from '../config/config.ts';
import { DEFAULT_KDF, type Kdf, kdfMemory, MAX_KDF_MEMORY } from '../crypto/keys.ts';
import { S3BackupError, UsageError } from '../errors.ts';

/**
 * Where the passphrase of an encrypted repository comes from, highest first: --password-file or
 * --password-command (not both), S3BACKUP_PASSWORD, the config's passwordCommand (or
 * S3BACKUP_PASSWORD_COMMAND), its passwordFile (or S3BACKUP_PASSWORD_FILE), else a prompt when
 * stdin is a terminal. A command runs only when a repository needs the passphrase. The
 * passphrase is never printed, logged, or put in an error message.
 */
export function passphraseSource(
  flags: { passwordFile?: string | undefined; passwordCommand?: string | undefined },
  cfg: ResolvedConfig,
): { passphrase?: string; fetchPassphrase?: () => Promise<string>; prompt?: () => Promise<string> } {
  if (flags.passwordFile && flags.passwordCommand) {
    throw new UsageError('--password-file and --password-command both give the passphrase: give one of them');
  }
  if (flags.passwordFile) return { passphrase: readPasswordFile(flags.passwordFile, '--password-file') };
  if (flags.passwordCommand) return { fetchPassphrase: passwordCommand(flags.passwordCommand, '--password-command') };
  const env = process.env.S3BACKUP_PASSWORD;
  if (env !== undefined && env !== '') return { passphrase: env };
  if (cfg.passwordCommand) return { fetchPassphrase: passwordCommand(cfg.passwordCommand, 'passwordCommand (S3BACKUP_PASSWORD_COMMAND)') };
  if (cfg.passwordFile) return { passphrase: readPasswordFile(cfg.passwordFile, 'passwordFile') };
  if (process.stdin.isTTY) return { prompt: () => promptHidden('passphrase for the repository: ') };
  return {};
}

/** What a password command may print: a passphrase is a line, this is far more than any. */
const MAX_PASSWORD_OUTPUT = 64 << 10;

/**
 * The passphrase printed by a shell command (its first line), fetched on first call and kept. Its
 * stderr is the user's (a password manager's prompt or error shows); its stdin is not given (it
 * may be the data of `backup --stdin`). Errors name the setting, never the command or its output,
 * either of which may hold the secret.
 */
export function passwordCommand(command: string, what: string): () => Promise<string> {
  let fetched: Promise<string> | undefined;
  return () => {
    // A failure is not kept: the scheduler's next run asks again (the secret store may be back).
    fetched ??= runPasswordCommand(command, what).catch((e: unknown) => {
      fetched = undefined;
      throw e;
    });
    return fetched;
  };
}

function runPasswordCommand(command: string, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    let size = 0;
    child.stdout.on('data', (d: Buffer) => {
      if (size < MAX_PASSWORD_OUTPUT) chunks.push(d);
      size += d.length;
    });
    child.on('error', (e) => reject(new UsageError(`the password command given by ${what} could not be started: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code !== 0) {
        reject(
          new UsageError(
            `the password command given by ${what} failed (${signal ? `killed by ${signal}` : `exit code ${code}`}); nothing was read or written`,
            {
              hint: 'run it by hand to see why; it must print the passphrase on its first line and exit 0',
            },
          ),
        );
        return;
      }
      const first = Buffer.concat(chunks).toString('utf8').split(/\r?\n/, 1)[0] ?? '';
      if (first === '')
        reject(
          new UsageError(`the password command given by ${what} printed no passphrase`, {
            hint: 'it must print the passphrase on its first line',
          }),
        );
      else resolve(first);
    });
  });
}

/** The passphrase for a new key (init, key add): from its own file or variable, else asked twice on a terminal. */
export async function newPassphrase(
  file: string | undefined,
  envName: string,
  what: string,
  command?: () => Promise<string>,
): Promise<string> {
  if (file) return readPasswordFile(file, what);
  if (command) return command();
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
