# graphql-outbox image: the service runs its TypeScript directly (node --import tsx), so there is
# no compile step; the build only installs the production dependencies from package-lock.json.
#
#   docker build -t graphql-outbox .
#   docker run --rm -p 4000:4000 -e DATABASE_URL=... -e AMQP_URL=... graphql-outbox          # all roles
#   docker run --rm -e DATABASE_URL=... -e AMQP_URL=... graphql-outbox \
#     node --import tsx src/main.ts relay                                                   # one role
#
# docker-compose.yml beside this file runs it with MySQL and RabbitMQ.

# Node.js LTS on Debian 12 slim. The package needs node >= 20.11 (package.json "engines").
ARG NODE_IMAGE=node:24-bookworm-slim

# --- deps: production node_modules only (tsx is a runtime dependency; devDependencies are not
# needed to run). Installed on the same base image as the runtime, so esbuild's platform binary
# (pulled in by tsx) matches.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# --- source: the files the service reads at run time (src/, schema.graphql, drizzle/ and the
# playground's own files in public/). .dockerignore keeps node_modules, tests and the like out.
FROM ${NODE_IMAGE} AS source
WORKDIR /src
COPY . .
RUN mkdir -p public

# --- runtime
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and read-only for the service's user: the process writes nothing here (tsx keeps
# its transform cache under /tmp).
COPY --from=deps /app/node_modules ./node_modules
# tsconfig.json is read by tsx when it transforms src/ (e.g. verbatimModuleSyntax), so the image
# runs the code exactly as `npm start` does in development.
COPY --from=source /src/package.json /src/package-lock.json /src/tsconfig.json /src/schema.graphql ./
# Migrations, applied at start by every role (src/db/migrate.ts reads ../../drizzle).
COPY --from=source /src/drizzle ./drizzle
COPY --from=source /src/public ./public
COPY --from=source /src/src ./src
# `npm run db:migrate` inside the image (the service also migrates at start).
COPY --from=source /src/scripts ./scripts

# The official node images ship this unprivileged user (uid/gid 1000).
USER node

# 4000: GraphQL over HTTP and WebSocket, /healthz, /readyz and /metrics (processes with the app
# role). 9464: /metrics and /healthz of a standalone relay or worker (METRICS_PORT).
EXPOSE 4000 9464

# Slim images have no curl: Node's fetch asks /healthz on PORT (app role) and, if nothing answers
# there, on METRICS_PORT (a standalone relay or worker), so the one check suits every role.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const ports=[process.env.PORT||'4000',process.env.METRICS_PORT||'9464'];(async()=>{for(const port of ports){try{const res=await fetch('http://127.0.0.1:'+port+'/healthz',{signal:AbortSignal.timeout(3000)});if(res.ok)process.exit(0)}catch{}}process.exit(1)})()"]

# node itself is PID 1 (not npm, not a shell), so `docker stop`'s SIGTERM reaches the service,
# which drains and exits 0 (SHUTDOWN_TIMEOUT_MS, default 10 s). Roles: all three by default;
# pass them as arguments (`... src/main.ts relay`) or set ROLES=app,worker.
STOPSIGNAL SIGTERM
CMD ["node", "--import", "tsx", "src/main.ts"]
