/**
 * Everything the run prints goes through here: progress lines stamped with the run's clock, and
 * the final tables. Plain stdout, no logger: this is a report for a person (or a CI log).
 */
const startedAt = Date.now();

export function elapsed(at = Date.now()): string {
  return `t+${((at - startedAt) / 1000).toFixed(1).padStart(5)}s`;
}

export function say(line: string): void {
  process.stdout.write(`[chaos ${elapsed()}] ${line}\n`);
}

export function printBlock(title: string, lines: readonly string[]): void {
  process.stdout.write(`\n== ${title}\n${lines.map((l) => `   ${l}`).join('\n')}\n`);
}

export interface Row {
  readonly name: string;
  readonly expected: string;
  readonly observed: string;
  /** undefined: could not be checked here (the service does not offer it yet). */
  readonly ok: boolean | undefined;
}

export function printTable(title: string, headers: readonly string[], rows: readonly (readonly string[])[]) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const rule = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`;
  process.stdout.write(`\n== ${title}\n${[line(headers), rule, ...rows.map(line)].join('\n')}\n`);
}

export function printInvariants(rows: readonly Row[]): void {
  printTable(
    'Invariants',
    ['invariant', 'expected', 'observed', 'ok'],
    rows.map((r) => [r.name, r.expected, r.observed, r.ok === undefined ? 'n/a' : r.ok ? 'yes' : 'NO']),
  );
}

export const seconds = (ms: number | undefined): string =>
  ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`;
