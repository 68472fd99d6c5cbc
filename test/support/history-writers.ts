/**
 * Handling transactions appending to the history as fast as they can, in a process of their own
 * (so the readers under test do not slow them down): `node --import tsx history-writers.ts URL
 * WRITERS MILLISECONDS CUSTOMERS`. Prints the number of transactions when done.
 */
import { connectDatabase, transaction } from '../../src/db/client.js';
import { appendHistoryAndCommit } from '../../src/history/store.js';
import { handledRow } from './history.js';

const [url, writers, ms, customers] = process.argv.slice(2);
if (!url) throw new Error('usage: history-writers.ts URL WRITERS MILLISECONDS CUSTOMERS');
const handle = connectDatabase(url, Number(writers));
const until = Date.now() + Number(ms);
let transactions = 0;
await Promise.all(
  Array.from({ length: Number(writers) }, async () => {
    while (Date.now() < until) {
      const rows = Array.from({ length: 1 + Math.floor(Math.random() * 3) }, () =>
        handledRow(String(1 + Math.floor(Math.random() * Number(customers))), 1),
      );
      // On a loaded machine a statement or a pool checkout may pass its bound: that transaction
      // failed (or, failing in its COMMIT, may have committed), and the readers' check reads
      // what the table holds, so the writer just goes on.
      await transaction(handle.db, (tx) => appendHistoryAndCommit(tx, rows)).then(
        () => transactions++,
        () => undefined,
      );
    }
  }),
);
await handle.close();
process.stdout.write(`${transactions}\n`);
