/**
 * The benchmarks' HTTP client: JSON POSTs over kept-alive HTTP/1.1 connections, one request at a
 * time per connection, a new connection whenever none is free.
 *
 * Why not fetch: the client shares the machine's two cores with the service, MariaDB and
 * RabbitMQ, and undici's fetch spends about 0.4 ms of CPU per request (measured beside this
 * client: 0.05 ms). That CPU is taken from the processes being measured, so with fetch the
 * benchmark measured its own client as much as the service. This client sends a request as one
 * write and reads the answer by its Content-Length, which is all the service's JSON answers need.
 */
import { connect, type Socket } from 'node:net';

export interface JsonResponse {
  readonly status: number;
  readonly body: unknown;
}

/** Node's HTTP server closes a kept-alive connection after 5 s without a request by default. */
const IDLE_REUSE_MS = 2_000;

class Connection {
  /** When its last answer came (performance.now()). */
  idleSince = 0;
  private readonly socket: Socket;
  private received = Buffer.alloc(0);
  private pending: { resolve: (r: JsonResponse) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  constructor(host: string, port: number) {
    this.socket = connect(port, host);
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk) => {
      this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
      this.answer();
    });
    const fail = (error: Error) => {
      this.failure ??= error;
      this.pending?.reject(this.failure);
      this.pending = undefined;
    };
    this.socket.on('error', fail);
    this.socket.on('close', () => fail(new Error('connection closed by the server')));
  }

  get usable(): boolean {
    return this.failure === undefined;
  }

  send(request: string): Promise<JsonResponse> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.socket.write(request);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  /** Hands the pending request its answer once the whole of it has arrived. */
  private answer(): void {
    const headEnd = this.received.indexOf('\r\n\r\n');
    if (headEnd < 0 || !this.pending) return;
    const head = this.received.subarray(0, headEnd).toString('latin1');
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
    if (length === undefined) {
      this.socket.destroy(new Error(`an answer without Content-Length: ${head.split('\r\n')[0]}`));
      return;
    }
    const end = headEnd + 4 + Number(length);
    if (this.received.length < end) return;
    const status = Number(head.slice(9, 12));
    const text = this.received.subarray(headEnd + 4, end).toString('utf8');
    this.received = this.received.subarray(end);
    const { resolve, reject } = this.pending;
    this.pending = undefined;
    try {
      resolve({ status, body: JSON.parse(text) as unknown });
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
    }
  }
}

export class BenchHttpClient {
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private readonly host: string;
  private readonly port: number;
  private readonly path: string;

  constructor(url: string) {
    const { hostname, port, pathname } = new URL(url);
    this.host = hostname;
    this.port = Number(port || 80);
    this.path = pathname;
  }

  /** POSTs `payload` as JSON; resolves with the status and the parsed JSON answer. */
  async post(payload: unknown): Promise<JsonResponse> {
    const json = JSON.stringify(payload);
    const request =
      `POST ${this.path} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`;
    let connection = this.idle.pop();
    // A connection idle for a while may be closing at the server's end right now (its
    // keep-alive timeout), which would fail a request it may or may not have taken: not reused.
    while (connection && (!connection.usable || performance.now() - connection.idleSince > IDLE_REUSE_MS)) {
      connection.close();
      this.all.delete(connection);
      connection = this.idle.pop();
    }
    return this.sendOn(connection ?? this.open(), request);
  }

  private async sendOn(connection: Connection, request: string): Promise<JsonResponse> {
    try {
      return await connection.send(request);
    } finally {
      connection.idleSince = performance.now();
      if (connection.usable) this.idle.push(connection);
      else this.all.delete(connection);
    }
  }

  close(): void {
    for (const connection of this.all) connection.close();
    this.all.clear();
    this.idle.length = 0;
  }

  private open(): Connection {
    const connection = new Connection(this.host, this.port);
    this.all.add(connection);
    return connection;
  }
}
