import { z } from 'zod';

/**
 * The second repository of `s3backup copy` and of the scheduler's copy job (docs/configuration.md
 * "Copy"): where backups are copied, the passphrase file of that repository when it is
 * encrypted (the passphrase settings of the config are the first repository's), and its S3
 * endpoint, region and credentials profile when they are not the first one's (another provider).
 */
export const CopySettings = z
  .object({
    to: z.string().min(1),
    passwordFile: z.string().min(1),
    endpoint: z.string().min(1),
    region: z.string().min(1),
    profile: z.string().min(1),
  })
  .strict()
  .partial();
