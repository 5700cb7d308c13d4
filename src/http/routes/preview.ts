import type { Readable } from 'node:stream';
import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import type { Multipart } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../../config.js';
import { AppError, IngestError } from '../../core/errors.js';
import { FORMATS, type Format } from '../../core/job.js';
import { LOAD_OPTION_NAMES, loadOptions, type LoadOptions } from '../../datasets/options.js';
import { shownFileName } from '../../formats/file-name.js';
import { formatOfName, type Input } from '../../formats/parse.js';
import { prepareImport, type ImportRequest } from '../../jobs/import-job.js';
import type { ImportSettings } from '../../sources/imports.js';
import {
  previewInput,
  unknownSchemaKeys,
  unknownSchemaMessage,
  type Preview,
  PREVIEW_MAX_BYTES,
  PREVIEW_MAX_ROWS,
} from '../../jobs/preview.js';
import { importInput } from '../../sources/imports.js';
import type { Db } from '../../storage/db.js';
import { multipartLimits } from '../receive.js';
import { errorRef, uploadBodySchema, uploadQuerySchema } from '../schemas.js';
import { importBodySchema } from './import.js';
import { declaredTargets, inFlightLimit } from './submit.js';

// Each preview holds up to PREVIEW_MAX_BYTES of input and its text: a few at a time per process.
const MAX_PREVIEWS_IN_FLIGHT = 8;

const previewSchema = {
  $id: 'Preview',
  type: 'object',
  required: ['format', 'encoding', 'dialect', 'columns', 'rows', 'row_errors', 'truncated', 'warnings'],
  properties: {
    format: { type: 'string', enum: FORMATS },
    encoding: { type: 'string', description: 'The encoding the text is read in (given, or UTF-16 by its byte order mark, else UTF-8)' },
    dialect: {
      type: ['object', 'null'],
      additionalProperties: true,
      description: 'How the CSV file is read, as a job shows it (`dialect` of a Job); null for other formats',
    },
    columns: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'original', 'type', 'reading', 'evidence'],
        properties: {
          name: { type: 'string', description: 'The column in SQL' },
          original: { type: 'string', description: 'The name as the file writes it' },
          type: { type: 'string', description: 'The type the records read so far give it (or the one declared)' },
          reading: {
            type: ['object', 'null'],
            additionalProperties: true,
            description: 'How its text is read into the type (a decimal comma, a date order…), or null: as PostgreSQL reads it',
          },
          evidence: { type: 'array', items: { type: 'string' }, description: 'Why the type is what it is' },
        },
      },
    },
    rows: {
      type: 'array',
      items: { type: 'array', items: { type: ['string', 'null'] } },
      description: 'The first 50 rows as they would load, in the columns’ order: text, null for NULL',
    },
    row_errors: {
      type: 'array',
      items: {
        type: 'object',
        required: ['line', 'error', 'excerpt'],
        properties: { line: { type: 'integer' }, error: { type: 'string' }, excerpt: { type: 'string' } },
      },
      description: 'The first 20 rows that would be row errors',
    },
    truncated: {
      type: 'boolean',
      description: `The input goes on beyond what was read (at most ${PREVIEW_MAX_BYTES} bytes of text, ${PREVIEW_MAX_ROWS} records)`,
    },
    warnings: { type: 'array', items: { type: 'string' } },
  },
} as const;

/** An import to preview: a URL or s3:// address and how to read it (no Jira pull: it is not a file). */
const previewImportSchema = {
  ...importBodySchema,
  properties: { ...importBodySchema.properties, source: { type: 'string', enum: ['url'], description: 'url (the default)' } },
} as const;

/** The upload's file as the preview reads it, and how: from a multipart body's form fields, or the query string. */
interface Received {
  input: Input;
  format: Format;
  load: LoadOptions;
  where: 'query' | 'body';
  /** Lets go of what the preview did not read: the rest of a request's body is drained, a download ended. */
  discard: (stream: Readable) => void;
  /** Reads the rest of the request (its parts after the file), once the preview is answered. */
  drain?: () => void;
}

type Query = Record<string, string | number | undefined>;

const loadOf = (query: Query, fields: Record<string, string>, fileName: string, format: Format) => {
  const given = Object.fromEntries(LOAD_OPTION_NAMES.map((name) => [name, (query[name] as string | undefined) ?? fields[name]]));
  const where = LOAD_OPTION_NAMES.some((name) => query[name] === undefined && fields[name] !== undefined) ? 'body' : 'query';
  return { load: loadOptions(given, fileName, format, where), where } as const;
};

const formatOf = (query: Query, fields: Record<string, string>, fileName: string): Format => {
  const named = (query.format as Format | undefined) ?? (fields.format as Format | undefined);
  if (named !== undefined && !(FORMATS as readonly string[]).includes(named))
    throw new AppError(422, 'validation_error', [{ loc: ['body', 'format'], msg: `format is one of ${FORMATS.join(', ')}`, type: 'enum' }]);
  const format = named ?? formatOfName(fileName) ?? (/\.(zip|gz|zst|zstd)$/i.test(fileName) ? 'csv' : undefined);
  if (!format)
    throw new AppError(
      415,
      'unsupported_file_type',
      `Unsupported file type "${shownFileName(fileName)}": send a .csv, .tsv, .json, .ndjson, .jsonl or .xlsx file (gzip, zstd or zip as well), or say format=`,
    );
  return format;
};

/** A multipart body's one file (form fields before it), as the preview reads it. */
async function multipartFile(request: FastifyRequest, query: Query, config: Config): Promise<Received> {
  const parts = request.parts({ limits: multipartLimits(config.maxUploadBytes) })[Symbol.asyncIterator]();
  const drain = () =>
    void (async () => {
      for (let next = await parts.next(); !next.done; next = await parts.next()) if (next.value.type === 'file') next.value.file.resume();
    })().catch(() => {});
  const fields: Record<string, string> = {};
  let file: Extract<Multipart, { type: 'file' }> | undefined;
  try {
    // Not a for loop: asking for the next part before the file is read would wait for ever.
    while (!file) {
      const next = await parts.next();
      if (next.done) break;
      const part = next.value;
      if (part.type === 'field') fields[part.fieldname] = String(part.value);
      else if (part.fieldname !== 'file') {
        part.file.resume();
        throw new AppError(400, 'file_missing', `Send the file in a field named "file", not "${part.fieldname}"`);
      } else file = part;
    }
  } catch (err) {
    drain();
    if (err instanceof AppError) throw err;
    throw new AppError(400, 'invalid_multipart', `The multipart/form-data body is malformed: ${(err as Error).message}`);
  }
  if (!file) throw new AppError(400, 'file_missing', 'No file: send it in a multipart field named "file"');
  const stream = file.file;
  try {
    const format = formatOf(query, fields, file.filename);
    const { load, where } = loadOf(query, fields, shownFileName(file.filename), format);
    return { input: { scratchDir: config.uploadDir, open: async () => stream }, format, load, where, discard: (s) => s.resume(), drain };
  } catch (err) {
    stream.resume();
    drain();
    throw err;
  }
}

export const previewRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { db: Db; config: Config; imports: ImportSettings } }> = async (
  app,
  { db, config, imports: settings },
) => {
  app.addSchema(previewSchema);
  // Any other body is the file itself, read as a stream (never held whole).
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  app.post(
    '/api/preview',
    {
      onRequest: inFlightLimit(MAX_PREVIEWS_IN_FLIGHT, 'previews'),
      schema: {
        summary:
          'Read the start of a file as a load would (an upload: multipart or the raw body, with its query options; or an import: JSON with url): its encoding, dialect, columns with their types and evidence, first rows and row errors. Nothing is stored',
        tags: ['submit'],
        querystring: uploadQuerySchema,
        body: {
          content: {
            'application/json': { schema: previewImportSchema },
            'multipart/form-data': { schema: uploadBodySchema },
          },
        },
        response: { 200: { $ref: 'Preview#' }, 400: errorRef, 413: errorRef, 415: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request) => {
      const query = request.query as Query;
      const type = request.headers['content-type']?.toLowerCase() ?? '';
      let received: Received;
      if (request.isMultipart()) received = await multipartFile(request, query, config);
      else if (type.startsWith('application/json')) {
        const body = request.body as ImportRequest;
        let job;
        try {
          job = await prepareImport({ db, settings }, body);
        } catch (err) {
          if (err instanceof IngestError) throw new AppError(422, 'import_refused', err.message);
          throw err;
        }
        received = {
          input: await importInput(job.sourceUrl!, settings),
          format: job.format,
          load: job.load,
          where: 'body',
          discard: (s) => s.destroy(),
        };
      } else {
        const stream = request.body as Readable | undefined;
        if (!stream)
          throw new AppError(400, 'file_missing', 'No file: send it as the body, or as multipart/form-data in a field named "file"');
        // The body's media type names a format as a file name would.
        const fileName = type.startsWith('text/tab-separated-values')
          ? 'preview.tsv'
          : type.includes('ndjson')
            ? 'preview.ndjson'
            : 'preview.csv';
        const format = formatOf(query, {}, fileName);
        const { load, where } = loadOf(query, {}, fileName, format);
        received = { input: { scratchDir: config.uploadDir, open: async () => stream }, format, load, where, discard: (s) => s.resume() };
      }
      const { input, format, load, where, discard, drain } = received;
      let preview: Preview;
      try {
        preview = await previewInput(input, {
          format,
          read: load.read,
          targets: declaredTargets(load.types),
          limits: config.limits,
          discard,
        });
      } catch (err) {
        if (err instanceof IngestError) throw new AppError(422, 'unreadable_file', err.message);
        // A zip is read whole: past MAX_UPLOAD_BYTES its part is cut off.
        if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE')
          throw new AppError(413, 'payload_too_large', `The file is larger than MAX_UPLOAD_BYTES (${config.maxUploadBytes} bytes)`);
        if (request.raw.destroyed || /unexpected end|terminated early|aborted|premature close/i.test((err as Error).message))
          throw new AppError(400, 'upload_incomplete', 'The upload ended before the file was complete');
        throw err;
      } finally {
        drain?.();
      }
      const unknown = unknownSchemaKeys(Object.keys(load.types), preview.columns);
      if (unknown.length > 0 && preview.columns.length > 0)
        preview.warnings.push(`${unknownSchemaMessage(unknown, preview.columns)}: a load would refuse it (${where} schema)`);
      return preview;
    },
  );
};
