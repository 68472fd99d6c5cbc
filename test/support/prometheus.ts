import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { waitFor } from './wait.js';

const run = promisify(execFile);

/** Debian's `prometheus` package (`apt-get install -y prometheus`; .ci/run installs it). */
export const PROMETHEUS = process.env.PROMETHEUS_PATH ?? '/usr/bin/prometheus';
export const PROMTOOL = process.env.PROMTOOL_PATH ?? '/usr/bin/promtool';

export function requirePrometheus(): void {
  for (const binary of [PROMETHEUS, PROMTOOL]) {
    if (!existsSync(binary)) {
      throw new Error(
        `The rules and dashboard tests run the real Prometheus, and there is none at ${binary}. Install it with \`apt-get install -y prometheus\` (as root; it starts no service in a container), or point PROMETHEUS_PATH and PROMTOOL_PATH at the binaries.`,
      );
    }
  }
}

export async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(PROMTOOL, args);
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code?: number; stdout?: string; stderr?: string };
    return { code: code ?? 1, output: `${stdout ?? ''}${stderr ?? ''}` };
  }
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface TestPrometheus {
  readonly url: string;
  /** An instant query's result vector. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  /** The alerts Prometheus holds now (pending and firing). */
  alerts(): Promise<Array<{ labels: Record<string, string>; state: string }>>;
  stop(): Promise<void>;
}

/**
 * A private Prometheus on a free port, scraping `targets` (host:port, path /metrics) every
 * second and evaluating `rules` (a rules file's text) every second, with its own data directory.
 */
export async function startPrometheus(targets: string[], rules?: string): Promise<TestPrometheus> {
  requirePrometheus();
  const dir = await mkdtemp(join(tmpdir(), 'outbox-prometheus-'));
  const port = await freePort();
  const config = [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    rules ? 'rule_files: [rules.yml]' : '',
    'scrape_configs:',
    '  - job_name: graphql-outbox',
    `    static_configs: [{ targets: ${JSON.stringify(targets)} }]`,
  ].join('\n');
  await writeFile(join(dir, 'prometheus.yml'), config);
  if (rules) await writeFile(join(dir, 'rules.yml'), rules);
  const child: ChildProcess = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${url}${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${body.error}`);
    return body.data;
  };
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('Prometheus to be ready', async () => {
      if (child.exitCode !== null) throw new Error(`Prometheus exited: ${log}`);
      return (await fetch(`${url}/-/ready`)).ok;
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url,
    query: async (expr) =>
      (
        await api<{ result: Awaited<ReturnType<TestPrometheus['query']>> }>(
          `/api/v1/query?query=${encodeURIComponent(expr)}`,
        )
      ).result,
    alerts: async () =>
      (await api<{ alerts: Awaited<ReturnType<TestPrometheus['alerts']>> }>('/api/v1/alerts')).alerts,
    stop,
  };
}

/**
 * The metric names a PromQL expression reads: identifiers outside label matchers, `by`/`on`
 * lists, strings and durations, less functions, keywords and recording rules (they have a `:`).
 */
export function metricNamesIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\[[^\]]*\]/g, '');
  const names = bare.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
  return [...new Set(names)].filter(
    (name) => !name.includes(':') && !PROMQL_WORDS.has(name) && name.includes('_'),
  );
}

const PROMQL_WORDS = new Set([
  'histogram_quantile',
  'min_over_time',
  'max_over_time',
  'avg_over_time',
  'count_over_time',
  'label_replace',
]);

/** Every series name /metrics can show, from its `# TYPE` lines (a histogram's three included). */
export function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name as string);
    if (type === 'histogram' || type === 'summary') {
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
    }
  }
  return names;
}
