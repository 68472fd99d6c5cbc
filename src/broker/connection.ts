import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import amqp, { type ChannelModel } from 'amqplib';
import type { Logger } from '../log.js';
import { Loop } from '../support/loop.js';
import { sleep, untilStopped } from '../support/sleep.js';

const RECONNECT_BASE_MS = 200;
// Short: after a network cut heals, the next try must come within seconds.
const RECONNECT_MAX_MS = 2_000;
/** How long a stop waits for the broker to answer the connection's close. */
const CLOSE_WAIT_MS = 1_000;

/**
 * Bounds on waiting for a broker behind a link that silently drops packets: the heartbeat
 * asked of the broker (amqplib closes a connection that heard nothing for two of them, and the
 * broker closes ours likewise, handing a cut-off consumer's unacked messages to others), the
 * time to open a connection, and the idle time before TCP's first keep-alive probe.
 */
export interface BrokerBounds {
  readonly heartbeatSeconds: number;
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
}

export const DEFAULT_BROKER_BOUNDS: BrokerBounds = {
  heartbeatSeconds: 5,
  connectTimeoutMs: 3_000,
  keepAliveMs: 5_000,
};

/** AMQP_URL with the heartbeat added, unless the URL sets its own. */
function withHeartbeat(url: string, seconds: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(seconds));
  return parsed.toString();
}

/**
 * One AMQP connection, kept open: when it drops (broker restart, `close_all_connections`,
 * network), it is opened again with capped back-off, for as long as the owner has not stopped.
 * Channels do not survive a reconnect; users ask `connection()` for the current one whenever
 * their channel closed and build their channels again.
 *
 * Each role gets its own BrokerConnection: RabbitMQ throttles a connection that publishes too
 * fast, and a consumer sharing it would have its acks throttled too.
 */
export class BrokerConnection {
  private current: ChannelModel | undefined;
  private waiters: Array<(model: ChannelModel) => void> = [];
  private readonly loop: Loop;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly name: string,
    private readonly log: Logger,
    private readonly bounds: BrokerBounds = DEFAULT_BROKER_BOUNDS,
  ) {
    this.loop = new Loop(
      {
        name: `broker connection "${name}"`,
        log,
        backoffBaseMs: RECONNECT_BASE_MS,
        backoffMaxMs: RECONNECT_MAX_MS,
      },
      ({ signal, recovered }) => this.connectOnce(signal, recovered),
    );
  }

  start(): void {
    this.loop.start();
  }

  private get stopController(): { signal: AbortSignal } {
    return this.loop;
  }

  get isConnected(): boolean {
    return this.current !== undefined;
  }

  /** The open connection; waits for one while reconnecting. Rejects once stopped or aborted. */
  connection(signal?: AbortSignal): Promise<ChannelModel> {
    if (this.current) return Promise.resolve(this.current);
    if (this.stopController.signal.aborted) return Promise.reject(new Error('Broker connection stopped'));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error('Aborted while waiting for the broker'));
      };
      const waiter = (model: ChannelModel) => {
        signal?.removeEventListener('abort', onAbort);
        this.stopController.signal.removeEventListener('abort', onAbort);
        resolve(model);
      };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.stopController.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Whether the broker answers now: a channel opened and closed on the open connection (two
   * round trips), for /readyz. A connection that TCP still calls established says nothing
   * about a link that drops packets; only an answer does.
   */
  async answers(): Promise<boolean> {
    const model = this.current;
    if (!model) return false;
    const channel = await model.createChannel();
    await channel.close();
    return true;
  }

  /** Idempotent. Closes the connection; channels on it close with it. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const stopped = this.loop.stop();
      const model = this.current;
      this.current = undefined;
      // A broker behind a dead link never answers the close: wait a moment, then drop the socket.
      await Promise.race([model?.close().catch(() => {}), sleep(CLOSE_WAIT_MS)]);
      if (model) socketOf(model)?.destroy();
      await stopped;
    })();
    return this.stopping;
  }

  /** One turn: connect, serve until the connection closes, and let the loop connect again. */
  private async connectOnce(signal: AbortSignal, recovered: () => void): Promise<'busy'> {
    let model: ChannelModel;
    try {
      model = await amqp.connect(withHeartbeat(this.url, this.bounds.heartbeatSeconds), {
        clientProperties: { connection_name: this.name },
        // Until the connection is open; the heartbeat bounds every wait after that.
        timeout: this.bounds.connectTimeoutMs,
        keepAlive: true,
        keepAliveDelay: this.bounds.keepAliveMs,
        // amqplib leaves Nagle's algorithm on; with delayed ACKs that holds small frames
        // (a single publish, an ack) back by up to 40 ms on every hop.
        noDelay: true,
      });
    } catch (error) {
      // One line with what failed, not a stack per retry: a broker that is down is a state.
      const { code, message } = error as { code?: unknown; message?: unknown };
      throw new Error(`cannot connect to RabbitMQ (${typeof code === 'string' ? code : String(message)})`);
    }
    if (signal.aborted) {
      await model.close().catch(() => {});
      return 'busy';
    }
    const closed = new Promise<void>((resolve) => {
      model.once('close', () => resolve());
    });
    // An 'error' is always followed by 'close'; listening keeps it from crashing the process.
    model.on('error', (error: Error) =>
      this.log.warn({ err: error, connection: this.name }, 'broker connection error'),
    );
    model.on('blocked', (reason: string) =>
      this.log.warn({ reason, connection: this.name }, 'broker blocked the connection'),
    );
    if (!writeOncePerTick(model)) {
      // Still correct, only slower: an amqplib that keeps its socket elsewhere.
      this.log.warn({ connection: this.name }, 'AMQP socket not found; frames are written one by one');
    }
    this.current = model;
    this.log.info({ connection: this.name }, 'broker connected');
    recovered();
    for (const waiter of this.waiters.splice(0)) waiter(model);
    // stop() closes the connection itself and destroys its socket if the broker does not answer.
    await untilStopped(closed, signal);
    if (signal.aborted) return 'busy';
    this.current = undefined;
    // amqplib ends a connection that missed its heartbeats with a FIN, which a dead link never
    // acknowledges: the socket would linger in TCP's back-off. Destroyed, it is gone at once.
    socketOf(model)?.destroy();
    if (!signal.aborted) this.log.warn({ connection: this.name }, 'broker connection closed; reconnecting');
    return 'busy';
  }
}

/**
 * amqplib hands the socket each message's frames as a write of their own: a relay's batch of
 * 500 publishes, or a worker's acks, would go out as hundreds of system calls and TCP segments,
 * each costing the process and the broker CPU. Corked from a tick's
 * first write to the end of that tick, they leave as one writev; nothing waits longer than it
 * did, since the tick's other writes were queued behind the first anyway. amqplib exposes the
 * socket as `connection.stream` (net.Socket is the Duplex it keeps as it is); without one
 * where expected, writes stay as they were and the connection says so in the log.
 */
function socketOf(model: ChannelModel): Socket | undefined {
  const socket = (model as unknown as { connection?: { stream?: unknown } }).connection?.stream;
  return socket && typeof (socket as Socket).destroy === 'function' ? (socket as Socket) : undefined;
}

function writeOncePerTick(model: ChannelModel): boolean {
  const socket = socketOf(model);
  if (!(socket && typeof (socket as Writable).cork === 'function')) return false;
  const stream = socket as Writable;
  const write = stream.write;
  let corked = false;
  const uncork = () => {
    corked = false;
    stream.uncork();
  };
  stream.write = function (this: Writable, ...args: Parameters<Writable['write']>) {
    if (!corked) {
      corked = true;
      stream.cork();
      process.nextTick(uncork);
    }
    return write.apply(this, args);
  } as Writable['write'];
  return true;
}
