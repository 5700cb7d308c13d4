import { describe, expect, it } from 'vitest';
import { DATASET_LOCK_CLASS, LOCK_KEYS } from '../src/core/lock-keys.js';

describe('advisory lock keys', () => {
  it('gives every one-key lock its own key', () => {
    const keys = Object.values(LOCK_KEYS);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('has keys PostgreSQL takes: one-key locks a bigint, the dataset class an integer', () => {
    for (const key of Object.values(LOCK_KEYS)) expect(Number.isSafeInteger(key)).toBe(true);
    expect(Number.isInteger(DATASET_LOCK_CLASS) && Math.abs(DATASET_LOCK_CLASS) < 2 ** 31).toBe(true);
  });
});
