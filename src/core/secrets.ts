/**
 * Secrets at rest (a connection's API token): AES-256-GCM with SECRET_KEY (32 random bytes,
 * hex or base64), a fresh 12-byte IV each time, and the row's id as associated data, so a
 * sealed value cannot be moved to another row. The sealed text names the key it was sealed
 * with (a hash prefix), so a changed SECRET_KEY is said plainly instead of failing as garbage.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

export class SecretKeyError extends Error {}

/** SECRET_KEY as 32 bytes: 64 hex digits or 44 base64 characters. */
export function parseSecretKey(raw: string): Buffer {
  const text = raw.trim();
  const key = /^[0-9a-f]{64}$/i.test(text)
    ? Buffer.from(text, 'hex')
    : /^[A-Za-z0-9+/]{43}=$/.test(text)
      ? Buffer.from(text, 'base64')
      : undefined;
  if (key?.length !== 32) throw new SecretKeyError('must be 32 random bytes as 64 hex digits or base64 (e.g. `openssl rand -hex 32`)');
  return key;
}

const TAG_BYTES = 16;

const keyId = (key: Buffer) => createHash('sha256').update(key).digest('hex').slice(0, 8);

export function seal(key: Buffer, plaintext: string, boundTo: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(boundTo));
  const sealed = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', keyId(key), iv.toString('base64'), cipher.getAuthTag().toString('base64'), sealed.toString('base64')].join(':');
}

export function unseal(key: Buffer, text: string, boundTo: string): string {
  const [version, id, iv, tag, sealed] = text.split(':');
  if (version !== 'v1' || sealed === undefined) throw new SecretKeyError('the stored secret is not in a form Intake writes');
  if (id !== keyId(key))
    throw new SecretKeyError('the secret was stored with another SECRET_KEY: set that key again, or save the connection anew');
  // The tag's length is fixed: GCM would otherwise check a tag cut to 4 bytes, which a forger
  // can guess.
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv!, 'base64'), { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(boundTo));
  try {
    const tagBytes = Buffer.from(tag!, 'base64');
    if (tagBytes.length !== TAG_BYTES) throw new Error('tag length');
    decipher.setAuthTag(tagBytes);
    return Buffer.concat([decipher.update(Buffer.from(sealed, 'base64')), decipher.final()]).toString('utf8');
  } catch {
    throw new SecretKeyError('the stored secret does not open with SECRET_KEY (it was altered)');
  }
}
