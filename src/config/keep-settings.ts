import { z } from 'zod';
import { UsageError } from '../errors.ts';
import type { KeepPolicy } from '../retention/policy.ts';
import type { Same } from '../schema.ts';
import { type FileValues, setting } from './settings.ts';

/** A flag's count: digits only, 0 or more, else a usage error naming the flag. */
const count = (v: string, flag: string): number => {
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new UsageError(`${flag} must be a whole number of 0 or more, not ${JSON.stringify(v)}`);
  return Number(v);
};

/**
 * The retention policy (forget, and after each backup unless autoForget: false): which backups
 * to keep, per host and source set. The --keep-* flags replace "keep:" as a whole when any is
 * given; with neither, keep.last 5 (retention/policy.ts DEFAULT_POLICY).
 */
export const KeepSettings = z.object({
  last: setting(z.int().min(0), { flag: '--keep-last <n>', help: 'keep the n newest backups', parse: count }).optional(),
  hourly: setting(z.int().min(0), {
    flag: '--keep-hourly <n>',
    help: 'keep the newest backup of each of the last n hours that have one',
    parse: count,
  }).optional(),
  daily: setting(z.int().min(0), {
    flag: '--keep-daily <n>',
    help: 'keep the newest backup of each of the last n days that have one',
    parse: count,
  }).optional(),
  weekly: setting(z.int().min(0), {
    flag: '--keep-weekly <n>',
    help: 'keep the newest backup of each of the last n ISO weeks that have one',
    parse: count,
  }).optional(),
  monthly: setting(z.int().min(0), {
    flag: '--keep-monthly <n>',
    help: 'keep the newest backup of each of the last n months that have one',
    parse: count,
  }).optional(),
  yearly: setting(z.int().min(0), {
    flag: '--keep-yearly <n>',
    help: 'keep the newest backup of each of the last n years that have one',
    parse: count,
  }).optional(),
  /** Keep everything newer than this, e.g. "30d", "2w", "1y6m", "12h" (y years, m or M months, w weeks, d days, h hours). */
  within: setting(z.string().regex(/^(\d+[yMwdhm])+$/, 'a duration such as 30d, 2w, 1y6m or 12h'), {
    flag: '--keep-within <duration>',
    help: 'keep every backup younger than this, counted from the newest backup (y, m = months, w, d, h: 30d, 1y6m)',
  }).optional(),
  /** Keep backups with this tag; "a,b" = with both a and b. */
  tags: setting(z.array(z.string().min(1)), {
    flag: '--keep-tag <tag>',
    help: 'keep every backup with this tag ("a,b": with both); repeatable',
    repeatable: true,
  }).optional(),
});

// What retention/policy.ts takes, field for field: a rule added here and not there fails the build.
true satisfies Same<Required<FileValues<typeof KeepSettings>>, Required<KeepPolicy>>;
