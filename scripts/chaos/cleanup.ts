import { say } from './report.js';

type Action = { readonly name: string; readonly run: () => Promise<void> | void };

/**
 * Whatever the run started, it stops: on a normal end, on a failure and on Ctrl-C. Actions run
 * in reverse order of registration (load before processes before servers before the temporary
 * folder), each at most once, and one failing does not skip the others.
 *
 * A second Ctrl-C gives up on the orderly way and runs the `lastResort` hooks, which must be
 * synchronous (SIGKILL to the process groups we started, remove the folder), then exits.
 */
export class Cleanup {
  private readonly actions: Action[] = [];
  private readonly lastResort: Array<() => void> = [];
  private running: Promise<void> | undefined;
  /** Aborted by Ctrl-C / SIGTERM, so waits in the run give up at once. */
  readonly abort = new AbortController();

  add(name: string, run: Action['run']): void {
    this.actions.push({ name, run });
  }

  /** A synchronous hook for the second signal and for process exit. */
  addLastResort(hook: () => void): void {
    this.lastResort.push(hook);
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (const action of [...this.actions].reverse()) {
        try {
          await action.run();
        } catch (error) {
          say(`cleanup: ${action.name} failed: ${(error as Error).message}`);
        }
      }
    })();
    return this.running;
  }

  private runLastResort(): void {
    for (const hook of this.lastResort) {
      try {
        hook();
      } catch {
        // Best effort: the process is about to exit.
      }
    }
  }

  /** Installs the signal handlers; `onFirst` ends the run (it will call run() itself). */
  installSignals(): void {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        say(`${signal} again: killing everything now`);
        this.runLastResort();
        process.exit(130);
      }
      signalled = true;
      say(`${signal}: stopping and cleaning up (again to force)`);
      this.abort.abort(new Error(`interrupted by ${signal}`));
      this.run().then(
        () => process.exit(130),
        () => process.exit(130),
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // Whatever way the process ends, no child and no folder outlives it.
    process.on('exit', () => this.runLastResort());
  }
}
