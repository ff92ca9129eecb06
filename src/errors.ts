/**
 * Errors that reach the user. Every failure the CLI reports is one of these, so that the
 * message names the problem and `hint` names the fix; `exitCode` follows the documented codes
 * (1 failed, 2 usage or configuration error).
 */
export class S3BackupError extends Error {
  readonly exitCode: number;
  readonly hint: string | undefined;
  constructor(message: string, opts: { hint?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.exitCode = opts.exitCode ?? 1;
    this.hint = opts.hint;
  }
}

/** A usage or configuration mistake: exit code 2. */
export class UsageError extends S3BackupError {
  constructor(message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, { ...opts, exitCode: 2 });
  }
}

/** The key does not exist in the store. */
export class NotFoundError extends S3BackupError {
  readonly key: string;
  constructor(key: string, where: string) {
    super(`${where}: ${key} does not exist`);
    this.key = key;
  }
}

/** A create-only put found the key already there. */
export class AlreadyExistsError extends S3BackupError {
  readonly key: string;
  constructor(key: string, where: string) {
    super(`${where}: ${key} already exists`);
    this.key = key;
  }
}

/**
 * The store refused our credentials or permissions, or the bucket/directory is missing: a
 * configuration problem, so exit code 2 unless said otherwise.
 */
export class StoreAccessError extends S3BackupError {
  constructor(message: string, opts: { hint?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, { exitCode: 2, ...opts });
  }
}

/** Data read back does not match what the manifest promises. */
export class IntegrityError extends S3BackupError {}

/** A file system error as a warning says it: short words for the common ones, else code and message. */
export function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'EACCES' || err?.code === 'EPERM') return 'permission denied';
  if (err?.code === 'ENOENT') return 'no such file or directory';
  if (err?.code === 'ENOTDIR') return 'not a directory';
  // Node's system errors already start with their code ("EISDIR: illegal operation…").
  if (err?.code && !String(err.message).startsWith(`${err.code}:`)) return `${err.code}: ${err.message}`;
  return String(err?.message ?? e);
}

/** errText, followed by the error's hint when it has one: for warnings that must say how to fix what failed. */
export function errTextWithHint(e: unknown): string {
  return e instanceof S3BackupError && e.hint ? `${errText(e)}; ${e.hint}` : errText(e);
}
