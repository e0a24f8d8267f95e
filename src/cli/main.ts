#!/usr/bin/env node
// The `bridgehead` command. The libuv thread pool carries every fsync of the spool, so it
// is sized before anything touches it: concurrent syncs are what group commit batches.
process.env.UV_THREADPOOL_SIZE ??= '32';
const { run } = await import('./commands.js');
process.exitCode = await run(process.argv);
