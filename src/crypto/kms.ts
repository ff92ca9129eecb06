import { S3BackupError, StoreAccessError } from '../errors.ts';

/**
 * AWS KMS for wrapping the repository master key: GenerateDataKey when a KMS key is added,
 * Decrypt when the repository is opened. The SDK client is loaded only when a KMS key is used.
 * Endpoint, region and credentials follow the AWS conventions (AWS_ENDPOINT_URL_KMS,
 * AWS_REGION, AWS_PROFILE, …), like the S3 client's.
 */

export interface KmsOptions {
  region?: string | undefined;
  profile?: string | undefined;
}

type KmsModule = typeof import('@aws-sdk/client-kms');

async function client(opts: KmsOptions) {
  const kms: KmsModule = await import('@aws-sdk/client-kms');
  // Loaded with the SDK client, not before: it loads the SDK's HTTP handler.
  const { sdkProxyOptions } = await import('../store/sdk-proxy.ts');
  const region = opts.region || process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1';
  return { kms, client: new kms.KMSClient({ region, ...(opts.profile ? { profile: opts.profile } : {}), ...sdkProxyOptions() }) };
}

function translate(e: unknown, what: string, keyId?: string): S3BackupError {
  const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const name = err.name ?? 'Error';
  if (name === 'AccessDeniedException' || name === 'UnrecognizedClientException' || name === 'InvalidSignatureException') {
    return new StoreAccessError(`AWS KMS refused ${what} (${name})`, {
      cause: e,
      hint: `grant these credentials kms:GenerateDataKey and kms:Decrypt${keyId ? ` on ${keyId}` : ''}`,
    });
  }
  if (name === 'NotFoundException') {
    return new StoreAccessError(`AWS KMS key ${keyId ?? ''} does not exist (${what})`, {
      cause: e,
      hint: 'check --kms-key-id and the region',
    });
  }
  if (name === 'InvalidCiphertextException') {
    return new S3BackupError(
      `AWS KMS could not decrypt the repository key (${name}): the key file was changed, or it belongs to another KMS key or context`,
      { cause: e },
    );
  }
  return new S3BackupError(`AWS KMS ${what} failed: ${name}${err.message ? `: ${err.message.split('\n')[0]}` : ''}`, { cause: e });
}

/** A new 256-bit data key under the KMS key: its plaintext (to wrap with) and the KMS blob (to store). */
export async function kmsGenerateDataKey(
  keyId: string,
  context: Record<string, string>,
  opts: KmsOptions = {},
): Promise<{ plaintext: Buffer; blob: Buffer; keyArn: string }> {
  const { kms, client: c } = await client(opts);
  try {
    const r = await c.send(new kms.GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: context }));
    if (!r.Plaintext || !r.CiphertextBlob || r.Plaintext.length !== 32)
      throw new S3BackupError('AWS KMS GenerateDataKey returned no 256-bit data key');
    return { plaintext: Buffer.from(r.Plaintext), blob: Buffer.from(r.CiphertextBlob), keyArn: r.KeyId ?? keyId };
  } catch (e) {
    throw e instanceof S3BackupError ? e : translate(e, 'GenerateDataKey', keyId);
  } finally {
    c.destroy();
  }
}

export async function kmsDecrypt(blob: Buffer, context: Record<string, string>, keyId: string, opts: KmsOptions = {}): Promise<Buffer> {
  const { kms, client: c } = await client(opts);
  try {
    const r = await c.send(new kms.DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context, KeyId: keyId }));
    if (r.Plaintext?.length !== 32) throw new S3BackupError('AWS KMS Decrypt returned no 256-bit key');
    return Buffer.from(r.Plaintext);
  } catch (e) {
    throw e instanceof S3BackupError ? e : translate(e, 'Decrypt', keyId);
  } finally {
    c.destroy();
  }
}
