// The playground: GraphiQL talking to this service, queries and mutations over HTTP POST,
// subscriptions over the transport chosen above the editor (?transport=): graphql-ws (the
// default), GraphQL over SSE with the browser's own EventSource (which reconnects by itself
// and resumes with Last-Event-ID), or Apollo's multipart protocol over fetch.
(() => {
  const httpUrl = new URL('/graphql', window.location.href).href;
  const wsUrl = httpUrl.replace(/^http/, 'ws');
  const params = new URLSearchParams(window.location.search);
  const transport = ['sse', 'multipart'].includes(params.get('transport')) ? params.get('transport') : 'ws';
  const wsClient =
    transport === 'ws'
      ? window.graphqlWs.createClient({ url: wsUrl, lazy: true, retryAttempts: 5 })
      : undefined;
  const plain = window.GraphiQL.createFetcher({ url: httpUrl, wsClient });
  const fetcher =
    transport === 'ws'
      ? plain
      : (request, options) =>
          isSubscription(request)
            ? (transport === 'sse' ? overSse : overMultipart)(request)
            : plain(request, options);

  /** Whether the operation to run is a subscription (comments skipped; a playground's guess). */
  function isSubscription({ query, operationName }) {
    const text = query.replace(/#[^\n]*/g, '');
    const named = operationName
      ? new RegExp(`\\b(query|mutation|subscription)\\s+${operationName}\\b`).exec(text)
      : null;
    return (named ?? /\b(query|mutation|subscription)\b|\{/.exec(text))?.[1] === 'subscription';
  }

  /** Results as GraphiQL takes them: an async iterator fed by `start(push, end)`, stopped by `stop`. */
  function stream(start) {
    const queue = [];
    let wake;
    let done = false;
    const push = (result) => {
      queue.push(result);
      wake?.();
    };
    const end = () => {
      done = true;
      wake?.();
    };
    const stop = start(push, end);
    return {
      async next() {
        while (queue.length === 0 && !done) await new Promise((resolve) => (wake = resolve));
        return queue.length > 0 ? { done: false, value: queue.shift() } : { done: true, value: undefined };
      },
      async return() {
        stop();
        end();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  function overSse({ query, operationName, variables }) {
    const search = new URLSearchParams({ query });
    if (operationName) search.set('operationName', operationName);
    if (variables) search.set('variables', JSON.stringify(variables));
    return stream((push, end) => {
      const events = new EventSource(`${httpUrl}?${search}`);
      events.addEventListener('next', (message) => push(JSON.parse(message.data)));
      events.addEventListener('complete', () => {
        events.close();
        end();
      });
      return () => events.close();
    });
  }

  function overMultipart(request) {
    return stream((push, end) => {
      const controller = new AbortController();
      (async () => {
        const response = await fetch(httpUrl, {
          method: 'POST',
          signal: controller.signal,
          headers: {
            'content-type': 'application/json',
            accept: 'multipart/mixed;subscriptionSpec="1.0",application/json',
          },
          body: JSON.stringify(request),
        });
        if (!(response.headers.get('content-type') ?? '').startsWith('multipart/mixed')) {
          push(await response.json());
          return;
        }
        const decoder = new TextDecoder();
        let buffer = '';
        for await (const chunk of response.body) {
          buffer += decoder.decode(chunk, { stream: true });
          const parts = buffer.split('\r\n--graphql');
          buffer = parts.pop();
          for (const part of parts) {
            const json = part.slice(part.indexOf('\r\n\r\n') + 4);
            if (!json.startsWith('{')) continue;
            const { payload, errors } = JSON.parse(json);
            if (payload) push(payload);
            else if (errors) push({ errors });
          }
        }
      })()
        .catch((error) => controller.signal.aborted || push({ errors: [{ message: String(error) }] }))
        .finally(end);
      return () => controller.abort();
    });
  }

  // The transport picker above the editor: a reload keeps the tabs (GraphiQL stores them).
  const picker = document.getElementById('transport');
  if (picker) {
    picker.value = transport;
    picker.addEventListener('change', () => {
      params.set('transport', picker.value);
      window.location.search = params.toString();
    });
  }

  const examples = [
    {
      query: `# 1. Run this first: it streams every event the worker handles.
subscription Live {
  onCustomerEvent {
    eventId
    type
    customerId
    sequence
    occurredAt
    handledAt
    payload
    cursor
  }
}
# After a disconnect, resume exactly where you were, on any instance:
#   onCustomerEvent(after: "<the last cursor you received>") { … }`,
    },
    {
      query: `# 2. Then, in this tab, create a customer and watch tab 1.
mutation Create($input: CreateCustomerInput!) {
  createCustomer(input: $input) {
    eventId
    customer { id email name createdAt }
  }
}`,
      variables: JSON.stringify({ input: { email: 'ada@example.com', name: 'Ada Lovelace' } }, null, 2),
    },
    {
      query: `query Overview {
  outboxStats { pending held leased published dead oldestPendingAgeSeconds workerDeadLetters }
  customers(first: 10) {
    edges {
      node {
        id email name createdAt sequence
        events(first: 5) { edges { node { eventId type sequence handledAt cursor } } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}`,
    },
    {
      query: `# Operator operations are closed unless the service was started with ADMIN_TOKEN
# set (16+ characters). Put the token in the Headers pane below, replacing the
# placeholder: {"Authorization": "Bearer <ADMIN_TOKEN>"}. Without it: FORBIDDEN.
query DeadEvents {
  deadEvents(first: 20) { eventId type aggregateId attempts deadAt lastError }
}`,
      headers: JSON.stringify({ Authorization: 'Bearer paste-the-ADMIN_TOKEN-here' }, null, 2),
    },
    {
      query: `# The worker's dead letters: messages it parked (malformed, not ours, or failing
# after WORKER_MAX_ATTEMPTS). Operator operations: the token goes in the Headers pane
# as in the previous tab. Fix the cause, then run Requeue with the ids to move back
# (omit "ids" to move them all); each is handled once, whatever happens meanwhile.
query WorkerDeadLetters {
  workerDeadLetters(first: 20) { id eventId type aggregateId reason parkedAt attempts }
}

mutation Requeue($ids: [ID!]) {
  requeueWorkerDeadLetters(ids: $ids) { ids }
}`,
      variables: JSON.stringify({ ids: ['<an id from WorkerDeadLetters>'] }, null, 2),
      headers: JSON.stringify({ Authorization: 'Bearer paste-the-ADMIN_TOKEN-here' }, null, 2),
    },
  ];

  // ?query=…&variables=… opens the playground on that operation (links, scripted tests).
  const props = { fetcher, defaultEditorToolsVisibility: true, shouldPersistHeaders: false };
  if (params.has('query')) {
    props.query = params.get('query');
    props.variables = params.get('variables') ?? undefined;
  } else {
    props.defaultTabs = examples;
  }

  const root = window.ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(window.React.createElement(window.GraphiQL, props));
})();
