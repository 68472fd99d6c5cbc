import { ON_CUSTOMER_EVENT } from './subscriptions.js';

/** One SSE message as the HTML standard parses it: `id` is the last event id after it. */
export interface SseMessage {
  readonly id: string | undefined;
  readonly event: string;
  readonly data: string;
}

export interface HttpStream {
  readonly status: number;
  readonly headers: Headers;
  /** The raw body so far. */
  text(): string;
  /** True once the server ended the body. */
  ended(): boolean;
  close(): void;
}

export interface SseStream extends HttpStream {
  /** Every message with data, in order, with the last event id in force when it came. */
  messages(): SseMessage[];
  /** The last event id the stream set, with or without an event (what EventSource resends). */
  lastEventId(): string | undefined;
}

export interface MultipartStream extends HttpStream {
  /** Every JSON part, heartbeats (`{}`) included, in order. */
  parts(): Array<Record<string, unknown>>;
}

export interface StreamRequest {
  readonly query?: string;
  readonly variables?: Record<string, unknown>;
  readonly method?: 'GET' | 'POST';
  readonly headers?: Record<string, string>;
}

export const SSE_ACCEPT = 'text/event-stream';
/** What Apollo Client 3's HttpLink sends for a subscription. */
export const MULTIPART_ACCEPT = 'multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json';

/** Opens a subscription over HTTP and reads its body as it arrives. */
async function openStream(url: string, accept: string, request: StreamRequest): Promise<HttpStream> {
  const { query = ON_CUSTOMER_EVENT, variables, method = 'POST', headers = {} } = request;
  const controller = new AbortController();
  let target = url;
  const init: RequestInit = { method, signal: controller.signal, headers: { accept, ...headers } };
  if (method === 'GET') {
    const search = new URLSearchParams({ query });
    if (variables) search.set('variables', JSON.stringify(variables));
    target = `${url}?${search}`;
  } else {
    init.headers = { 'content-type': 'application/json', ...init.headers };
    init.body = JSON.stringify({ query, variables });
  }
  const response = await fetch(target, init);
  let body = '';
  let done = false;
  void (async () => {
    try {
      const decoder = new TextDecoder();
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        body += decoder.decode(chunk, { stream: true });
      }
    } catch {
      // Aborted by close(), or the connection was cut: the body so far is what counts.
    }
    done = true;
  })();
  return {
    status: response.status,
    headers: response.headers,
    text: () => body,
    ended: () => done,
    close: () => controller.abort(),
  };
}

export async function openSse(url: string, request: StreamRequest = {}): Promise<SseStream> {
  const stream = await openStream(url, SSE_ACCEPT, request);
  const parse = () => parseSse(stream.text());
  return { ...stream, messages: () => parse().messages, lastEventId: () => parse().lastEventId };
}

export async function openMultipart(url: string, request: StreamRequest = {}): Promise<MultipartStream> {
  const stream = await openStream(url, MULTIPART_ACCEPT, request);
  return { ...stream, parts: () => parseMultipart(stream.text()) };
}

/** The complete messages of an SSE body, by the HTML standard's rules for the fields used here. */
export function parseSse(body: string): { messages: SseMessage[]; lastEventId: string | undefined } {
  const messages: SseMessage[] = [];
  let lastEventId: string | undefined;
  const blocks = body.split('\n\n');
  blocks.pop(); // not terminated yet
  for (const block of blocks) {
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') lastEventId = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length > 0) messages.push({ id: lastEventId, event, data: data.join('\n') });
  }
  return { messages, lastEventId };
}

/** The complete JSON parts of a multipart body with boundary `graphql`. */
export function parseMultipart(body: string): Array<Record<string, unknown>> {
  const chunks = body.split('\r\n--graphql');
  chunks.pop(); // the part being written, or the closing `--`
  return chunks
    .map((chunk) => chunk.slice(chunk.indexOf('\r\n\r\n') + 4))
    .filter((json) => json.startsWith('{'))
    .map((json) => JSON.parse(json) as Record<string, unknown>);
}
