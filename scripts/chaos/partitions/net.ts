import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Every name the partition run gives a namespace or link starts so, followed by its pid in hex. */
const NS_PREFIX = 'gopx-';
const LINK_PREFIX = 'gx';

/** What a cut drops: the database's traffic, the broker's, or both. */
export type Link = 'db' | 'mq';

const ip = (...args: string[]) => run('ip', args);
const tc = (...args: string[]) => run('tc', args);

/** `ip`, `tc`, root, and the kernel's htb qdisc, u32 filter and blackhole qdisc, or why not. */
export async function partitionSupport(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces and tc)';
  const probe = `${LINK_PREFIX}${process.pid.toString(16)}p`;
  try {
    await ip('link', 'add', probe, 'type', 'veth', 'peer', 'name', `${probe}q`);
    await tc('qdisc', 'add', 'dev', probe, 'root', 'handle', '1:', 'htb', 'default', '10');
    await tc('class', 'add', 'dev', probe, 'parent', '1:', 'classid', '1:30', 'htb', 'rate', '10gbit');
    await tc('qdisc', 'add', 'dev', probe, 'parent', '1:30', 'handle', '30:', 'blackhole');
    await tc(
      'filter',
      'add',
      'dev',
      probe,
      'parent',
      '1:',
      'protocol',
      'ip',
      'prio',
      '1',
      'u32',
      'match',
      'ip',
      'dport',
      '1',
      '0xffff',
      'flowid',
      '1:30',
    );
    return undefined;
  } catch (error) {
    return `ip/tc cannot make a black hole here: ${(error as Error).message.split('\n')[0]}`;
  } finally {
    await ip('link', 'del', probe).catch(() => {});
  }
}

/**
 * Removes what an earlier partition run left behind when it died without cleaning up (killed
 * with SIGKILL, a crash of the machine's node): namespaces and links named after a pid that no
 * longer runs. Only names of this run's own pattern are touched.
 */
export function removeLeftovers(): string[] {
  const removed: string[] = [];
  const alive = (hex: string) => {
    try {
      process.kill(Number.parseInt(hex, 16), 0);
      return true;
    } catch {
      return false;
    }
  };
  const list = (args: string[]) => {
    try {
      return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return '';
    }
  };
  for (const line of list(['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const match = new RegExp(`^${NS_PREFIX}([0-9a-f]+)-`).exec(name);
    if (match?.[1] && !alive(match[1])) {
      list(['netns', 'del', name]);
      removed.push(name);
    }
  }
  for (const line of list(['-o', 'link', 'show']).split('\n')) {
    const name = /^\d+: ([^:@]+)/.exec(line)?.[1] ?? '';
    const match = new RegExp(`^${LINK_PREFIX}([0-9a-f]+)[bhp]`).exec(name);
    if (match?.[1] && !alive(match[1])) {
      list(['link', 'del', name]);
      removed.push(name);
    }
  }
  return removed;
}

export interface Namespace {
  readonly name: string;
  /** Its address on the run's bridge. */
  readonly address: string;
  readonly hostLink: string;
  readonly nsLink: string;
}

/**
 * The run's network: one bridge in the host with `hostAddress`, and per service process a
 * namespace joined to it by a veth pair. Each end of each pair has an htb root qdisc whose
 * class 1:30 feeds a blackhole qdisc; a cut adds u32 filters sending the database's or the
 * broker's packets (by the port of the host-side forwarder) into it, on both ends, so neither
 * side hears from the other and nothing fails fast. A heal deletes the filters.
 */
export class PartitionNet {
  readonly tag = process.pid.toString(16);
  readonly bridge = `${LINK_PREFIX}${this.tag}b`;
  private readonly namespaces: Namespace[] = [];
  private subnet = '';

  constructor(private readonly ports: Readonly<Record<Link, number>>) {}

  get hostAddress(): string {
    return `${this.subnet}.1`;
  }

  /** Picks a 10.213.x.0/24 that no route of the host uses, and makes the bridge. */
  async create(): Promise<void> {
    const { stdout } = await ip('-4', 'route');
    for (let x = 1; x < 255 && this.subnet === ''; x++) {
      if (!stdout.includes(`10.213.${x}.`)) this.subnet = `10.213.${x}`;
    }
    if (this.subnet === '') throw new Error('no free 10.213.x.0/24 subnet for the partition run');
    await ip('link', 'add', this.bridge, 'type', 'bridge');
    await ip('addr', 'add', `${this.hostAddress}/24`, 'dev', this.bridge);
    await ip('link', 'set', this.bridge, 'up');
  }

  async addNamespace(label: string): Promise<Namespace> {
    const i = this.namespaces.length + 1;
    const ns: Namespace = {
      name: `${NS_PREFIX}${this.tag}-${label}`,
      address: `${this.subnet}.${10 + i}`,
      hostLink: `${LINK_PREFIX}${this.tag}h${i}`,
      nsLink: `${LINK_PREFIX}${this.tag}n${i}`,
    };
    this.namespaces.push(ns);
    await ip('netns', 'add', ns.name);
    await ip('link', 'add', ns.hostLink, 'type', 'veth', 'peer', 'name', ns.nsLink);
    await ip('link', 'set', ns.nsLink, 'netns', ns.name);
    await ip('link', 'set', ns.hostLink, 'master', this.bridge);
    await ip('link', 'set', ns.hostLink, 'up');
    const inNs = (...args: string[]) => ip('netns', 'exec', ns.name, 'ip', ...args);
    await inNs('addr', 'add', `${ns.address}/24`, 'dev', ns.nsLink);
    await inNs('link', 'set', ns.nsLink, 'up');
    await inNs('link', 'set', 'lo', 'up');
    await this.prepare([], ns.hostLink);
    await this.prepare(['netns', 'exec', ns.name], ns.nsLink);
    return ns;
  }

  /** Drops every packet of `links` between `ns` and the host, both ways, until heal(). */
  async cut(ns: Namespace, links: readonly Link[]): Promise<void> {
    for (const link of links) {
      const port = String(this.ports[link]);
      const prio = link === 'db' ? '1' : '2';
      await this.tc([], ns.hostLink, 'add', prio, 'sport', port);
      await this.tc(['netns', 'exec', ns.name], ns.nsLink, 'add', prio, 'dport', port);
    }
  }

  async heal(ns: Namespace, links: readonly Link[]): Promise<void> {
    for (const link of links) {
      const prio = link === 'db' ? '1' : '2';
      await this.tc([], ns.hostLink, 'del', prio);
      await this.tc(['netns', 'exec', ns.name], ns.nsLink, 'del', prio);
    }
  }

  /** Deletes the namespaces (their veth pairs go with them) and the bridge. */
  async destroy(): Promise<void> {
    for (const ns of this.namespaces.splice(0)) await ip('netns', 'del', ns.name).catch(() => {});
    await ip('link', 'del', this.bridge).catch(() => {});
  }

  /** Synchronous, for the last-resort cleanup. */
  destroyNow(): void {
    for (const ns of this.namespaces.splice(0)) {
      try {
        execFileSync('ip', ['netns', 'del', ns.name], { stdio: 'ignore' });
      } catch {}
    }
    try {
      execFileSync('ip', ['link', 'del', this.bridge], { stdio: 'ignore' });
    } catch {}
  }

  private async prepare(prefix: string[], dev: string): Promise<void> {
    const tcIn = (...args: string[]) => (prefix.length ? ip(...prefix, 'tc', ...args) : tc(...args));
    await tcIn('qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '10');
    await tcIn('class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit');
    await tcIn('class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:30', 'htb', 'rate', '10gbit');
    await tcIn('qdisc', 'add', 'dev', dev, 'parent', '1:30', 'handle', '30:', 'blackhole');
  }

  private async tc(
    prefix: string[],
    dev: string,
    verb: 'add' | 'del',
    prio: string,
    side?: string,
    port?: string,
  ) {
    const args = ['filter', verb, 'dev', dev, 'parent', '1:', 'protocol', 'ip', 'prio', prio];
    if (verb === 'add' && side && port)
      args.push('u32', 'match', 'ip', side, port, '0xffff', 'flowid', '1:30');
    if (prefix.length) await ip(...prefix, 'tc', ...args);
    else await tc(...args);
  }
}
