/**
 * Which step of a backup an error came from ("pre-flight", "upload", "manifest", …), for
 * failure notifications and the run history. Kept beside the error (not in its message or
 * class), so that errors reach the user unchanged.
 */
export type BackupOperation =
  /** Sources, store access, opening or creating the repository. */
  | 'pre-flight'
  /** Waiting for forget/prune elsewhere to finish. */
  | 'lock'
  /** Choosing and reading the parent backup of an incremental. */
  | 'parent'
  /** Reading files, compressing and uploading the archive. */
  | 'upload'
  /** Writing the manifest (the step that makes the backup exist). */
  | 'manifest';

const operations = new WeakMap<object, BackupOperation>();

/** Record the step an error came from (the first one recorded wins). */
export function tagOperation<E>(error: E, operation: BackupOperation): E {
  if (typeof error === 'object' && error !== null && !operations.has(error)) operations.set(error, operation);
  return error;
}

export function failedOperation(error: unknown): BackupOperation | undefined {
  return typeof error === 'object' && error !== null ? operations.get(error) : undefined;
}
