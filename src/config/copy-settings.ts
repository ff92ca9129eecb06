import { z } from 'zod';

/**
 * The second repository of `s3backup copy` and of the scheduler's copy job (docs/configuration.md
 * "Copy"): where backups are copied, and the passphrase file of that repository when it is
 * encrypted (the passphrase settings of the config are the first repository's).
 */
export const CopySettings = z
  .object({
    to: z.string().min(1),
    passwordFile: z.string().min(1),
  })
  .strict()
  .partial();
