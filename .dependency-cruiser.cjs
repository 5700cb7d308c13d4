// The layers of src/, lowest first. A module may import its own layer and the layers below
// it, never one above (type-only imports count too), and no import may close a circle.
// docs/ARCHITECTURE.md describes each layer.
const LAYERS = [
  ['core', '^src/core/'],
  ['formats', '^src/formats/'],
  ['net', '^src/net/'],
  ['datasets', '^src/datasets/'],
  ['config', '^src/config[.]ts$'],
  ['storage', '^src/storage/'],
  ['live', '^src/live/'],
  ['sources', '^src/sources/'],
  ['jobs', '^src/jobs/'],
  ['runtime', '^src/runtime/'],
  ['http', '^src/http/'],
  ['process', '^src/(server[.]ts$|cli/)'],
];
// Side by side, not stacked: neither may import the other.
const SIBLINGS = [['formats', 'net']];

const path = (name) => LAYERS.find(([n]) => n === name)[1];
const upward = LAYERS.slice(0, -1).map(([name, from], i) => ({
  name: `no-upward-from-${name}`,
  comment: `${name} may import only the layers below it`,
  severity: 'error',
  from: { path: from },
  to: { path: LAYERS.slice(i + 1).map(([, p]) => p) },
}));
const siblings = SIBLINGS.flatMap(([a, b]) => [
  { name: `no-${a}-to-${b}`, severity: 'error', from: { path: path(a) }, to: { path: path(b) } },
  { name: `no-${b}-to-${a}`, severity: 'error', from: { path: path(b) }, to: { path: path(a) } },
]);

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    ...upward,
    ...siblings,
    {
      name: 'clients-stand-alone',
      comment: 'the API client (CLI, console, tests) shares only the job fields with the server',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { path: '^src/', pathNot: '^src/(client|core/job[.]ts$)' },
    },
    {
      name: 'console-through-the-client',
      severity: 'error',
      from: { path: '^src/console/' },
      to: { path: '^src/', pathNot: '^src/(console|client|core/job[.]ts$)' },
    },
    {
      name: 'nothing-imports-the-process',
      comment: 'the process (server.ts, cli/) wires everything; nothing below imports it',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(server[.]ts$|cli/)' },
      to: { path: '^src/(server[.]ts$|cli/)' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.tsx', '.js', '.mjs'] },
  },
};
