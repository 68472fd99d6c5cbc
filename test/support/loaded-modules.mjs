// Preloaded into a service process by telemetry-loading.test.ts (node --import): at exit, writes
// one JSON line naming every CommonJS module the process loaded. The OpenTelemetry packages are
// CommonJS, so an SDK imported anywhere, however late, is in the list.
import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';

const { cache } = createRequire(import.meta.url);
process.on('exit', () => {
  writeSync(1, `${JSON.stringify({ msg: 'loaded modules', modules: Object.keys(cache) })}\n`);
});
