import type { z } from 'zod';

/**
 * Checking the shape of what is read back from a repository (docs/format.md "Validation").
 *
 * Every JSON object s3backup reads from a repository (config.json, key files, manifest lines,
 * run records, locks) comes from storage we do not fully trust: valid JSON of the wrong shape
 * (`"sources": "x"`, an entry line `null`) must be reported as that object being damaged, by
 * name, never surface later as a TypeError deep inside a command. Each object has a zod schema
 * next to its TypeScript type, and `true satisfies Same<z.output<typeof Schema>, Type>` ties
 * the two together: adding, removing or retyping a field on one side only fails the build.
 * (Manifest entries, read a million at a time, have a hand-written check instead: see
 * checkEntry in manifest.ts.)
 *
 * Rules the schemas follow: fields may be added over versions, so a field some older s3backup
 * did not write is optional; unknown fields are accepted (forward compatibility); a known field
 * of the wrong type, or a required one missing, makes the object damaged.
 */

/**
 * Compile-time only: T and U are the same type, field for field, optional ones included (the
 * identity check: mutual assignability would let an optional field be missing on one side).
 */
export type Same<T, U> = (<V>() => V extends T ? 1 : 2) extends <V>() => V extends U ? 1 : 2 ? true : false;

/** What a value is, for a message: "a string", "null", "an array". */
export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return typeof v === 'string' || typeof v === 'number' ? `a ${typeof v}` : typeof v;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'an array',
  tuple: 'an array',
  object: 'an object',
  record: 'an object',
};

/** A field's path as written in messages: stats.bytesIn, sources[0].path. */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else if (typeof k === 'string' && /^[A-Za-z_$][\w$]*$/.test(k)) out += out ? `.${k}` : k;
    else out += `[${JSON.stringify(String(k))}]`;
  }
  return out;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** One zod issue as a short sentence: `field "sources" must be an array (it is a string)`. */
function issueText(issue: z.core.$ZodIssue, input: unknown): string {
  const p = fieldPath(issue.path);
  const subject = p ? `field "${p}"` : 'it';
  const value = valueAt(input, issue.path);
  const oneOf = (values: readonly unknown[]) =>
    values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;
  const shown =
    typeof value === 'string'
      ? JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
      : typeof value === 'number' || typeof value === 'boolean' || value === null
        ? String(value)
        : kindOf(value);
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return `${subject} is missing`;
      return `${subject} must be ${EXPECTED[issue.expected] ?? issue.expected} (it is ${kindOf(value)})`;
    case 'invalid_value':
      return `${subject} must be ${oneOf(issue.values)} (it is ${value === undefined ? 'missing' : shown})`;
    case 'invalid_union':
      if ('options' in issue && Array.isArray(issue.options))
        return `${subject} must be ${oneOf(issue.options)} (it is ${value === undefined ? 'missing' : shown})`;
      return `${subject} is not any of the accepted forms`;
    case 'custom':
      return `${subject} ${issue.message}${value === undefined ? '' : ` (it is ${shown})`}`;
    default:
      return `${subject} is invalid (${issue.message})`;
  }
}

/** The first problem zod found, as a sentence, and how many more there are. */
function shapeProblem(error: z.ZodError, input: unknown): string {
  const [first, ...rest] = error.issues;
  if (!first) return 'it is invalid';
  return issueText(first, input) + (rest.length ? ` (and ${rest.length} more problem${rest.length === 1 ? '' : 's'})` : '');
}

/**
 * The value itself, once checked against the schema; else `fail` with the problem as a sentence.
 * The value is returned as it was read, not zod's copy: fields this s3backup does not know are
 * kept (an incremental copies its parent's archive references onto its own manifest, history
 * compaction rewrites run records), so the schemas must not transform (no defaults, no
 * transforms): what they accept is already of their type.
 */
export function checkShape<S extends z.ZodType>(schema: S, value: unknown, fail: (problem: string) => Error): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw fail(shapeProblem(r.error, value));
  return value as z.output<S>;
}

/** A refinement for ISO time fields: what Date.parse reads (an unparseable time would sort and compare as NaN). */
export const isTime = (s: string) => !Number.isNaN(Date.parse(s));
export const TIME_MESSAGE = 'must be an ISO 8601 time';
