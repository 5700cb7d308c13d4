import type { FastifyInstance } from 'fastify';
import { validationError } from '../core/errors.js';

// A number the schema would coerce to ±Infinity ("Infinity", "1e400", 309 digits), which passes
// an integer's minimum/maximum checks as no real number would.
const NON_FINITE = /^\s*[+-]?(?:infinity|\d*\.?\d+e[+-]?\d+|\d{309,}(?:\.\d*)?)\s*$/i;

/** Refuses, before validation, query values that would be coerced to a number that is not finite. */
export function refuseNonFiniteNumbers(scope: FastifyInstance): void {
  scope.addHook('preValidation', async (request) => {
    for (const [name, value] of Object.entries((request.query ?? {}) as Record<string, unknown>)) {
      if (typeof value === 'string' && NON_FINITE.test(value) && !Number.isFinite(Number(value))) {
        throw validationError([{ loc: ['query', name], msg: `${name} must be a finite number`, type: 'value_error' }]);
      }
    }
  });
}
