// The playground: GraphiQL talking to this service, queries and mutations over HTTP POST,
// subscriptions over graphql-ws on the same /graphql path.
(() => {
  const httpUrl = new URL('/graphql', window.location.href).href;
  const wsUrl = httpUrl.replace(/^http/, 'ws');
  const wsClient = window.graphqlWs.createClient({ url: wsUrl, lazy: true, retryAttempts: 5 });
  const fetcher = window.GraphiQL.createFetcher({ url: httpUrl, wsClient });

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
  const params = new URLSearchParams(window.location.search);
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
