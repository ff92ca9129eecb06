import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { setting } from './settings.ts';

/** `s3backup dashboard`: where it listens and when the newest backup counts as too old. */
export const DashboardSettings = z.object({
  host: setting(z.string().min(1), {
    flag: '--host <address>',
    help: 'address to listen on (default 127.0.0.1; anything but loopback needs --token)',
  }).default('127.0.0.1'),
  port: setting(z.int().min(0).max(65535), {
    flag: '--port <n>',
    help: 'port to listen on (default 8080; 0 = any free port)',
    parse: (v, flag) => {
      if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) throw new UsageError(`${flag} ${v} is not a port number (0-65535)`);
      return Number(v);
    },
  }).default(8080),
  /** Newest backup older than this shows red, e.g. "26h", "2d" (default: from schedule.backup). */
  maxAge: setting(z.string().regex(/^(\d+[yMwdh])+$/, 'a duration such as 26h, 2d or 1w'), {
    flag: '--max-age <duration>',
    help: "a group's newest backup older than this shows red, e.g. 26h, 2d (default: 1.5 × the schedule.backup interval, else twice the group's usual gap)",
  }).optional(),
  /**
   * Several repositories in one dashboard (config file only; on the command line, --repo given
   * more than once). Each as --repo takes it; the endpoint, credentials and passphrase source are
   * the ones of the rest of the configuration, shared by all.
   */
  repositories: setting(z.array(z.string().min(1)).min(1), {
    help: 'repositories shown together in one fleet overview (as --repo takes them)',
  }).optional(),
});
