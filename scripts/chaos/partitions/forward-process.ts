/**
 * The partition run's forwarders in a process of their own (forward.ts, ForwardingProcess):
 * `node --import tsx forward-process.ts '<routes as JSON>'`. Prints "listening" once every
 * route listens; SIGTERM closes them and exits.
 */
import { Forwarder, type Route } from './forward.js';

const routes = JSON.parse(process.argv[2] ?? '[]') as Route[];
const forwarders = routes.map((r) => new Forwarder(r.listen, r.target));

async function main(): Promise<void> {
  await Promise.all(forwarders.map((f) => f.start()));
  process.stdout.write('listening\n');
}

process.on('SIGTERM', () => {
  void Promise.all(forwarders.map((f) => f.stop())).finally(() => process.exit(0));
});

main().catch((error: unknown) => {
  process.stderr.write(`forwarders failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
