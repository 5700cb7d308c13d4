/**
 * S3 (and S3-compatible servers: MinIO, s3rver …): uploads kept as objects, and objects read
 * by an import. Credentials come from the AWS SDK's own chain (environment, profile, instance
 * role); Intake never logs them.
 */
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { addAbortSignal, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config.js';
import { AppError } from '../core/errors.js';
import { IngestError } from '../core/errors.js';
import type { Input } from '../formats/parse.js';
import type { UploadStore } from './uploads.js';

const MIB = 1024 ** 2;

/**
 * `timeoutMs`: how long a connection may take to open, and a request's socket may stay silent
 * (also while a body streams): an S3 server that hangs fails the read as a network error
 * instead of holding the job for ever.
 */
export function s3Client(config: Config['s3'], timeoutMs: number): S3Client {
  return new S3Client({
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.forcePathStyle,
    ...(config.credentials && { credentials: config.credentials }),
    // The SDK's default CRC32 checksums (aws-chunked bodies, x-amz-checksum-* headers) are
    // refused by several S3-compatible servers: send and check them only where S3 requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    requestHandler: { connectionTimeout: timeoutMs, requestTimeout: timeoutMs, throwOnRequestTimeout: true },
  });
}

/** S3 allows 10,000 parts: a part size that fits the largest upload allowed, at least 5 MiB. */
export function partSizeFor(maxUploadBytes: number): number {
  return Math.max(5 * MIB, Math.ceil(maxUploadBytes / 9_000 / MIB) * MIB);
}

const statusOf = (err: unknown) => (err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined);
const isMissing = (err: unknown) =>
  statusOf(err) === 404 || (err as { name?: string }).name === 'NoSuchKey' || (err as { name?: string }).name === 'NotFound';

/** What went wrong talking to S3, without credentials or signatures (never the request itself). */
export function s3Problem(err: unknown): string {
  const status = statusOf(err);
  const name = (err as { name?: string }).name ?? 'Error';
  const message = (err as Error).message?.slice(0, 300) ?? String(err);
  return status ? `${name} (HTTP ${status}): ${message}` : `${name}: ${message}`;
}

/** An object as a job's input: streamed from S3 when the job reads it. */
export function objectInput(client: S3Client, bucket: string, key: string, scratchDir: string): Input {
  return {
    scratchDir,
    async open(signal) {
      try {
        const body = (await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal })).Body as Readable;
        // The request's signal ends its wait for an answer; a body that stalls is ended here.
        if (signal) addAbortSignal(signal, body);
        return body;
      } catch (err) {
        signal?.throwIfAborted();
        if (isMissing(err)) throw new IngestError(`s3://${bucket}/${key} does not exist (404)`);
        const status = statusOf(err);
        if (status === 403 || status === 401)
          throw new IngestError(`s3://${bucket}/${key} may not be read with Intake's credentials: ${s3Problem(err)}`);
        if (status !== undefined && status >= 400 && status < 500)
          throw new IngestError(`s3://${bucket}/${key} cannot be read: ${s3Problem(err)}`);
        throw err; // a server or network error: the job is tried again
      }
    },
  };
}

/**
 * Uploads as objects `<prefix><job id>` in `bucket`, written with multipart upload as they
 * stream in (a part in memory at a time per upload, two in flight); an upload that fails is
 * aborted, so no object and no parts are left.
 */
export function s3Store(
  client: S3Client,
  options: { bucket: string; prefix: string; maxUploadBytes: number; scratchDir: string },
): UploadStore {
  const { bucket, prefix } = options;
  const key = (jobId: string) => `${prefix}${jobId}`;
  const partSize = partSizeFor(options.maxUploadBytes);
  return {
    kind: 's3',
    scratchDir: options.scratchDir,
    async put(jobId, body) {
      let bodyError: Error | undefined;
      let size = 0;
      const counted = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          size += chunk.length;
          callback(null, chunk);
        },
      });
      // The body's own errors (the client left, a limit) are the caller's to answer; a premature
      // close or an abort is only the echo of the upload failing and tearing the pipe down.
      body.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ERR_STREAM_PREMATURE_CLOSE' && err.code !== 'ABORT_ERR' && err.name !== 'AbortError') bodyError ??= err;
      });
      const piping = pipeline(body, counted).catch(() => {});
      const upload = new Upload({
        client,
        params: { Bucket: bucket, Key: key(jobId), Body: counted },
        partSize,
        queueSize: 2,
        leavePartsOnError: false,
      });
      try {
        await upload.done();
      } catch (err) {
        body.destroy();
        counted.destroy();
        await piping;
        if (bodyError !== undefined) throw bodyError;
        throw new AppError(
          503,
          'upload_store_unavailable',
          `The upload could not be stored in s3://${bucket}/${prefix}: nothing was kept; try again (${s3Problem(err)})`,
        );
      }
      await piping;
      if (bodyError !== undefined) {
        await this.remove(jobId);
        throw bodyError;
      }
      return size;
    },
    async input(jobId) {
      return (await this.exists(jobId)) ? objectInput(client, bucket, key(jobId), options.scratchDir) : undefined;
    },
    async exists(jobId) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key(jobId) }));
        return true;
      } catch (err) {
        if (isMissing(err)) return false;
        throw err;
      }
    },
    async remove(jobId) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key(jobId) }));
    },
    // lib-storage aborts a failed multipart upload itself; one cut off by a crash is left to the
    // bucket's lifecycle rule (AbortIncompleteMultipartUpload, see the README).
    async sweep() {
      return 0;
    },
  };
}
