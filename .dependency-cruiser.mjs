// Architecture rules of ../shared/DESIGN.md ("Dependency rules"), checked by
// `npm run lint:arch` (docs/design-notes.md, "Architecture rules"). The fifth rule, no file
// under src/ over 500 lines, is eslint's max-lines (eslint.config.js): this tool sees
// imports, not lines.

/** Pipeline stages: each owns its worker and is woken by the queue core, which knows none. */
const STAGES = [
  'smtp',
  'hygiene',
  'categorizer',
  'routing',
  'linkstate',
  'delivery',
  'dsn',
  'tracking',
  'directory',
  'sinks',
  'admin',
  'service',
  'cli',
];
const stageFolders = `^src/(${STAGES.join('|')})/`;

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'queue-imports-no-stage',
      comment:
        'The queue core holds rows and wakes stages but decides nothing, so it imports no ' +
        'stage, not even a type (a type from a stage is the stage deciding the shape of the ' +
        "queue's data). It may import src/message (envelope and header facts), src/config " +
        '(its settings), src/logs (event ids and logging) and src/net (address helpers). ' +
        'A stage that needs to be woken registers with the queue; the queue does not call it.',
      severity: 'error',
      from: { path: '^src/queue/' },
      to: { path: stageFolders },
    },
    {
      name: 'smtp-not-delivery-routing-engine',
      comment:
        'SMTP receive answers 250 once the message is on disk and hands it to the queue core; ' +
        'it does not route, deliver or drive the queue engine. The sending side (smtp/client) ' +
        'is used by delivery, never the other way round.',
      severity: 'error',
      from: { path: '^src/smtp/' },
      to: { path: ['^src/delivery/', '^src/routing/', '^src/queue/engine[^/]*$'] },
    },
    {
      name: 'no-circular',
      comment:
        'No circular imports, type-only imports included (tsPreCompilationDeps below): a ' +
        'type-only cycle is harmless at run time but couples the two modules all the same, ' +
        'and a later value import turns it into a real one.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'stage-imports-no-other-worker',
      comment:
        "A stage talks to another stage through the queue core, never by importing the other's " +
        'worker (src/<stage>/**/worker.ts). Only the wiring (src/service, and src/cli which ' +
        'starts it) imports every worker.',
      severity: 'error',
      from: { path: '^src/([^/]+)/', pathNot: '^src/(service|cli)/' },
      to: { path: '^src/.+/worker\\.ts$', pathNot: '^src/$1/' },
    },
    {
      name: 'resolvable',
      comment:
        'Every import resolves to a file or package. Not an architecture rule: it guards the ' +
        'others, which would pass vacuously if the `.js` paths of our ES modules stopped ' +
        'resolving to their .ts sources.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    // Count `import type` too (see no-circular and queue-imports-no-stage).
    tsPreCompilationDeps: true,
    // NodeNext resolution: `./x.js` in a .ts file names ./x.ts.
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts', '.json'],
    },
    skipAnalysisNotInRules: true,
  },
};
