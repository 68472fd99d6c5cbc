// Compiles src/ into dist/ (tsconfig.build.json), which is what `npm start` and the image run.
//
//   node scripts/build.mjs              `npm run build`: a clean build, always
//   node scripts/build.mjs --if-stale   before `npm start` and `npm run db:migrate`: builds only
//                                       when dist/ is missing or older than src/ or a tsconfig
//
// Plain JavaScript, so it runs before anything is compiled. The freshness check keeps
// `npm ci && npm start` one command without rebuilding on every start, and never runs code
// older than the sources next to it. Without src/ (the production image) dist/ is all there is.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const INPUTS = ['src', 'tsconfig.json', 'tsconfig.build.json'].map((path) => join(root, path));
const DIST = join(root, 'dist');
// Touched with the time the last successful build started: an input changed during a build
// is newer than it, so the next start builds again.
const STAMP = join(DIST, '.build-stamp');

/** The newest modification time under a path; a directory's own time covers deleted files. */
function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(path).reduce((max, entry) => Math.max(max, newest(join(path, entry))), stat.mtimeMs);
}

function isStale() {
  if (!existsSync(join(root, 'src'))) return false;
  if (!existsSync(STAMP) || !existsSync(join(DIST, 'main.js'))) return true;
  const built = statSync(STAMP).mtimeMs;
  return INPUTS.some((input) => existsSync(input) && newest(input) > built);
}

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

function build() {
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    fail(
      'dist/ is missing or older than src/, and building it needs TypeScript, a dev dependency: ' +
        'run `npm ci` (without --omit=dev), then `npm start` again.',
    );
  }
  const startedAt = new Date();
  // From scratch, so a deleted source file leaves no module behind in dist/.
  rmSync(DIST, { recursive: true, force: true });
  const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], {
    stdio: 'inherit',
  });
  // noEmitOnError: a failed build leaves no dist/, so nothing stale can start.
  if (result.status !== 0) fail('Build failed: the TypeScript errors are above (also `npm run typecheck`).');
  writeFileSync(STAMP, '');
  utimesSync(STAMP, startedAt, startedAt);
}

if (!process.argv.includes('--if-stale')) {
  build();
} else if (isStale()) {
  process.stderr.write('dist/ is missing or older than src/: building it (npm run build)\n');
  build();
}
