# graphql-outbox image: the service's TypeScript compiled to JavaScript (npm run build) and run
# by node with the production dependencies only.
#
#   docker build -t graphql-outbox .
#   docker run --rm -p 4000:4000 -e DATABASE_URL=... -e AMQP_URL=... graphql-outbox          # all roles
#   docker run --rm -e DATABASE_URL=... -e AMQP_URL=... graphql-outbox node dist/main.js relay  # one role
#   docker run --rm -e DATABASE_URL=... graphql-outbox node dist/migrate.js                   # migrations only
#
# docker-compose.yml beside this file runs it with MySQL and RabbitMQ.

# Node.js LTS on Debian 12 slim. The package needs node >= 20.11 (package.json "engines").
ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: all dependencies (TypeScript is a dev dependency), then src/ → dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs ./scripts/
COPY src ./src
RUN npm run build

# --- deps: production node_modules only. Installed on the same base image as the runtime.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# --- runtime
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and read-only for the service's user: the process writes nothing here.
COPY --from=deps /app/node_modules ./node_modules
# The compiled code reads its files relative to itself, one level up from dist/<folder>/, as
# from src/<folder>/ in development: ../../schema.graphql, ../../drizzle (migrations, applied
# at start by every role), ../../public and ../../node_modules (the playground's files).
COPY package.json package-lock.json schema.graphql ./
COPY drizzle ./drizzle
COPY public ./public
COPY --from=build /src/dist ./dist
# Lets `npm start` and `npm run db:migrate` work in the image too: with no src/ beside dist/,
# the freshness check has nothing to rebuild from and runs dist/ as it is.
COPY scripts/build.mjs ./scripts/

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
# pass them as arguments (`node dist/main.js relay`) or set ROLES=app,worker. Source maps point
# stack traces in the logs at src/ lines.
STOPSIGNAL SIGTERM
CMD ["node", "--enable-source-maps", "dist/main.js"]
