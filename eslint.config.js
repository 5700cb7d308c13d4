// ESLint: typescript-eslint's type-checked recommended rules over all TypeScript, plus the two
// rules that catch what review missed before: a closure reading a binding before its
// declaration runs (an SSE slot leaked that way) and a promise nobody awaits.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'test-output/', '**/*.mjs', '**/*.js', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      'no-use-before-define': 'off',
      '@typescript-eslint/no-use-before-define': ['error', { functions: false, classes: true, variables: true, typedefs: false }],
      '@typescript-eslint/no-floating-promises': 'error',
      // A `let` declared before the closures that read it and set once after them is that fix.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // An async function without await is how a Fastify plugin, or one backend of an async
      // interface (the in-memory cache beside Redis), says it returns a promise.
      '@typescript-eslint/require-await': 'off',
      // Control characters are matched on purpose: kept from terminals, file names and PostgreSQL text.
      'no-control-regex': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Tests and benchmarks read answers as untyped JSON and assert on them field by field.
    files: ['test/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
