import { z } from 'zod';
import { parsePositiveDuration } from '../size.ts';
import { setting } from './settings.ts';

/** A stage's list of commands: a new schema each time, since a setting's flag is registered on its schema. */
const commands = () => z.array(z.string().trim().min(1, 'a hook command must not be empty'));

/**
 * Commands run around each backup (`s3backup backup` and the scheduler's backup job), each by
 * /bin/sh with the run's facts in S3BACKUP_* variables (docs/configuration.md "Hooks"). A flag
 * replaces the config file's list of the same stage.
 */
export const HookSettings = z.object({
  before: setting(commands(), {
    flag: '--before <cmd>',
    help: 'run this shell command before the backup (a dump, a snapshot); if it fails, the run fails and nothing is written; repeatable, replaces hooks.before',
    repeatable: true,
  }).optional(),
  after: setting(commands(), {
    flag: '--after <cmd>',
    help: 'run this shell command after a successful backup; if it fails, a warning (exit 3); repeatable, replaces hooks.after',
    repeatable: true,
  }).optional(),
  /** After a failed run (a failing before hook included); a failure of its own is logged. */
  onFailure: commands().optional(),
  /** Last, after every run, successful or not. */
  always: commands().optional(),
  /** Each command's limit: past it the command (and what it started) is stopped and counts as failed. */
  timeout: setting(
    z.union([z.number().positive(), z.string()]).check((ctx) => {
      try {
        parsePositiveDuration(ctx.value, 'hooks.timeout');
      } catch (e) {
        ctx.issues.push({ code: 'custom', message: (e as Error).message.replace(/^hooks\.timeout:? /, ''), input: ctx.value });
      }
    }),
    {
      flag: '--hook-timeout <duration>',
      help: 'stop a hook command still running after this long (e.g. 90s, 30min; default 1h) and count it as failed',
    },
  ).optional(),
});

export type HookValues = z.output<typeof HookSettings>;
