/**
 * The README and docs/ point at files, sections and tests: a rename that leaves a pointer
 * behind is a broken promise to the reader ("the test that shows it" that no longer exists).
 * Every relative link must reach a file (and its heading, when it names one), and every
 * file name written in backticks must exist in the repository.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const documents = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, '')
    .replace(/[^\p{L}\p{N} -]/gu, '')
    .replace(/ /g, '-');
}

function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6} (.+)$/.exec(line);
    if (heading?.[1]) found.add(slug(heading[1]));
  }
  return found;
}

/** Markdown outside fenced blocks, where links and inline code mean what they say. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '');
}

const links = (markdown: string): string[] =>
  [...prose(markdown).matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1] ?? '');

/** `src/x.ts`, `relay.test.ts`, `docker-compose.yml`: names of files this repository holds. */
const fileNames = (markdown: string): string[] =>
  [...prose(markdown).matchAll(/`([\w./-]+\.(?:ts|md|mjs|json|graphql|yml|png|sql))`/g)]
    .map((match) => match[1] ?? '')
    .filter((name) => !name.startsWith('dist/') && !name.includes('*'));

function exists(name: string, from: string): boolean {
  const candidates = [
    join(root, name),
    join(root, dirname(from), name),
    join(root, 'test', name),
    join(root, 'test/unit', name),
  ];
  return candidates.some((candidate) => existsSync(candidate));
}

describe('README and docs', () => {
  it.each(documents)('%s: every relative link reaches a file and its heading', (document) => {
    const text = readFileSync(join(root, document), 'utf8');
    const broken: string[] = [];
    for (const link of links(text)) {
      if (/^[a-z]+:/i.test(link)) continue;
      const [path = '', fragment] = link.split('#');
      const target = path === '' ? join(root, document) : resolve(join(root, dirname(document)), path);
      if (!existsSync(target)) {
        broken.push(`${link} (no ${relative(root, target)})`);
        continue;
      }
      if (fragment && target.endsWith('.md') && !anchors(readFileSync(target, 'utf8')).has(fragment)) {
        broken.push(`${link} (no heading #${fragment})`);
      }
    }
    expect(broken).toEqual([]);
  });

  it.each(documents)('%s: every file named in backticks exists', (document) => {
    const text = readFileSync(join(root, document), 'utf8');
    const missing = fileNames(text).filter((name) => !exists(name, document));
    expect(missing).toEqual([]);
  });

  it('anchors follow GitHub', () => {
    expect(slug('What is guaranteed, and the test that shows it')).toBe(
      'what-is-guaranteed-and-the-test-that-shows-it',
    );
    expect(slug('The `outbox` table')).toBe('the-outbox-table');
  });
});
