import {
  createSourceEventStream,
  type ExecutionArgs,
  type ExecutionResult,
  execute,
  getOperationAST,
  Kind,
} from 'graphql';
import { FROM_HISTORY_ROW, type FromHistoryRow } from '../history/store.js';
import { failSpan, linkToTraceparent, type Span, SpanKind, tracer, within } from '../telemetry/tracer.js';

/** The span's name and attributes for one subscription, worked out when a span first records. */
interface Label {
  readonly name: string;
  readonly attributes: Readonly<Record<string, string>>;
}

/**
 * graphql-js's subscribe (the source stream, each event executed with it as the root value),
 * with each event's delivery to this subscriber as a span: "{field} deliver", e.g.
 * `onCustomerEvent deliver`, a CONSUMER span linked to the worker's span that handled the event
 * (its context is stored with the history row). A root, not a child of the handling: a
 * subscriber may read an event days after it was handled, and one handling reaches any number
 * of subscribers; each delivery joins the create's trace by its link, as the relay's publish
 * does. The span covers the execution of the subscriber's selection and the transport's write:
 * it ends when the transport comes back for the next result, or ends the stream. Every
 * transport (graphql-ws, SSE, multipart) subscribes through here (pipeline.ts).
 *
 * With no SDK, each event costs one no-op span and nothing else: names, attributes and links
 * are worked out only for a span that records.
 */
export async function subscribeDelivering(
  args: ExecutionArgs,
): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!(Symbol.asyncIterator in source)) return source;
  const events = source[Symbol.asyncIterator]();
  let label: Label | undefined;
  /** The last result's span, until the transport has written that result. */
  let open: Span | undefined;
  const delivered = () => {
    open?.end();
    open = undefined;
  };
  const stream: AsyncIterableIterator<ExecutionResult> = {
    async next() {
      delivered();
      const step = await events.next();
      if (step.done) return { done: true, value: undefined };
      const event: unknown = step.value;
      const span = tracer.startSpan('deliver', DELIVERY);
      const run = () => execute({ ...args, rootValue: event });
      try {
        let result: ExecutionResult;
        if (span.isRecording()) {
          label ??= labelOf(args);
          describe(span, label, event);
          result = await within(span, run);
          const error = result.errors?.[0];
          if (error) failSpan(span, error.message, String(error.extensions?.code ?? 'error'));
        } else result = await within(span, run);
        open = span;
        return { done: false, value: result };
      } catch (error) {
        failSpan(span, error instanceof Error ? error.message : String(error));
        span.end();
        await events.return?.().catch(() => {});
        throw error;
      }
    },
    async return() {
      delivered();
      await events.return?.();
      return { done: true, value: undefined };
    },
    async throw(error?: unknown) {
      delivered();
      await events.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return stream;
    },
  };
  return stream;
}

/** Constant, so that a span that does not record costs no allocation of its options. */
const DELIVERY = { kind: SpanKind.CONSUMER, root: true } as const;

function labelOf(args: ExecutionArgs): Label {
  const operation = getOperationAST(args.document, args.operationName);
  const first = operation?.selectionSet.selections[0];
  const field = first?.kind === Kind.FIELD ? first.name.value : 'subscription';
  const attributes: Record<string, string> = { 'graphql.operation.type': 'subscription' };
  const name = operation?.name?.value;
  if (name) attributes['graphql.operation.name'] = name;
  return { name: `${field} deliver`, attributes };
}

/** The span's name, the operation, and the event's id, position and handling link when it has them. */
function describe(span: Span, label: Label, event: unknown): void {
  span.updateName(label.name);
  span.setAttributes(label.attributes);
  const row =
    typeof event === 'object' && event !== null ? (event as FromHistoryRow)[FROM_HISTORY_ROW] : undefined;
  if (!row) return;
  span.setAttributes({
    'outbox.event.id': row.eventId,
    'outbox.event.type': row.type,
    // The position the client's opaque cursor encodes (the codec is the domain's).
    'outbox.history.position': row.position,
  });
  const link = linkToTraceparent(row.traceparent);
  if (link) span.addLink(link);
}
