import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';
import { describe, expectTypeOf, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { jobSchema } from '../src/http/schemas.js';

/** The type Fastify's type provider reads from a schema, without the index signature of an open object. */
type FromSchema<S> = (JsonSchemaToTsProvider & { schema: S })['validator'];
type Named<T> = { [K in keyof T as string extends K ? never : K]: T[K] };

describe('the job fields table', () => {
  it('gives the API schema of a job exactly the payload type', () => {
    expectTypeOf<Named<FromSchema<typeof jobSchema>>>().toEqualTypeOf<JobPayload>();
  });
});
