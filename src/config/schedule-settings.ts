import { z } from 'zod';
import { setting } from './settings.ts';

/** Cron expressions for `s3backup schedule` (5 or 6 fields, UTC unless timezone is set). */
export const ScheduleSettings = z.object({
  backup: setting(z.string().min(1), {
    flag: '--backup-cron <expr>',
    help: 'cron expression for the backup job (overrides schedule.backup)',
  }).optional(),
  cost: setting(z.string().min(1), {
    flag: '--cost-cron <expr>',
    help: 'cron expression for the cost job (overrides schedule.cost)',
  }).optional(),
  copy: setting(z.string().min(1), {
    flag: '--copy-cron <expr>',
    help: 'cron expression for the copy job, every new backup into copy.to (overrides schedule.copy)',
  }).optional(),
  timezone: setting(z.string().min(1), {
    flag: '--timezone <tz>',
    help: 'IANA time zone of the cron expressions (overrides schedule.timezone; default UTC)',
  }).optional(),
});
