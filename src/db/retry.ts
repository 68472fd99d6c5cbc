import { ErrorNumber } from './dialect.js';
import { mysqlErrno } from './errors.js';

/** Deadlocks and lock wait timeouts roll back the whole transaction; running it again is safe. */
const RETRIES = 3;

/** Runs a whole transaction (`run`) again after a deadlock or a lock wait timeout, RETRIES times in all. */
export async function retryingDeadlocks<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      const errno = mysqlErrno(error);
      const retryable = errno === ErrorNumber.DEADLOCK || errno === ErrorNumber.LOCK_WAIT_TIMEOUT;
      if (!retryable || attempt >= RETRIES) throw error;
    }
  }
}
