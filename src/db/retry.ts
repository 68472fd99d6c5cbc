import { isLockConflict } from './errors.js';

/** Deadlocks and lock wait timeouts roll back the whole transaction; running it again is safe. */
const RETRIES = 3;

/** Runs a whole transaction (`run`) again after a deadlock or a lock wait timeout, RETRIES times in all. */
export async function retryingDeadlocks<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (!isLockConflict(error) || attempt >= RETRIES) throw error;
    }
  }
}
