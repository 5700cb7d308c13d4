/**
 * A real S3-compatible server for the tests (s3rver, from npm), in a child process on
 * loopback, so that a test can kill it mid-request as a server that goes away. Its objects
 * live in `dir`: started again on the same directory and port, it serves them again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';

export const BUCKET = 'intake-test';

const SERVER = `
  const S3rver = require('s3rver');
  const [dir, port, bucket] = process.argv.slice(1);
  new S3rver({ address: '127.0.0.1', port: Number(port), silent: true, directory: dir, configureBuckets: [{ name: bucket }] })
    .run()
    .then((address) => console.log('listening ' + address.port));
`;

export interface S3Server {
  endpoint: string;
  /** What Intake needs in its environment to reach the server (credentials through the AWS SDK's chain). */
  env: Record<string, string>;
  client: S3Client;
  /** Stops the server at once (SIGKILL: connections cut, as when a server goes away). */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory. */
  restart(): Promise<void>;
  /** Freezes its process (SIGSTOP): connections are taken, nothing is answered, until thaw(). */
  freeze(): void;
  thaw(): void;
  keys(prefix?: string): Promise<string[]>;
  exists(key: string): Promise<boolean>;
  put(key: string, body: string | Uint8Array): Promise<void>;
  text(key: string): Promise<string>;
  remove(key: string): Promise<void>;
  stop(): Promise<void>;
}

function launch(dir: string, port: number): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['-e', SERVER, dir, String(port), BUCKET], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start:\n${output}`)), 20_000);
    child.stderr.on('data', (chunk) => (output += chunk));
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const match = /listening (\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]) });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code}:\n${output}`));
    });
  });
}

export async function startS3(): Promise<S3Server> {
  const dir = mkdtempSync(join(tmpdir(), 'intake-s3-'));
  const first = await launch(dir, 0);
  const port = first.port;
  let child = first.child;
  const endpoint = `http://127.0.0.1:${port}`;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const killed = () =>
    new Promise<void>((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()),
    );
  return {
    endpoint,
    env: {
      S3_ENDPOINT: endpoint,
      S3_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    },
    client,
    async kill() {
      child.kill('SIGKILL');
      await killed();
    },
    async restart() {
      ({ child } = await launch(dir, port));
    },
    freeze() {
      child.kill('SIGSTOP');
    },
    thaw() {
      child.kill('SIGCONT');
    },
    async keys(prefix = '') {
      const { Contents } = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
      return (Contents ?? []).map((object) => object.Key!);
    },
    async exists(key) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
        return true;
      } catch (err) {
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
        throw err;
      }
    },
    async put(key, body) {
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    },
    async text(key) {
      const { Body } = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      return Body!.transformToString();
    },
    async remove(key) {
      await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    },
    async stop() {
      client.destroy();
      child.kill('SIGTERM');
      await killed();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
