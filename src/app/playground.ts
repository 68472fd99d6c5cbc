import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Express, RequestHandler } from 'express';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/**
 * The files of the playground page, all served from this process. Apollo's default landing
 * page loads Apollo Sandbox from a CDN and is blank without internet; this one is GraphiQL's
 * self-contained build plus React and the graphql-ws client, from node_modules.
 */
const ASSETS: Readonly<Record<string, string>> = {
  'graphiql.min.css': root('node_modules/graphiql/graphiql.min.css'),
  'graphiql.min.js': root('node_modules/graphiql/graphiql.min.js'),
  'react.production.min.js': root('node_modules/react/umd/react.production.min.js'),
  'react-dom.production.min.js': root('node_modules/react-dom/umd/react-dom.production.min.js'),
  'graphql-ws.min.js': root('node_modules/graphql-ws/umd/graphql-ws.min.js'),
  'playground.js': root('public/playground.js'),
};
const PAGE = root('public/playground.html');

/** Refuses to start with a playground that would fail in the browser. */
function checkAssets(): void {
  const missing = [PAGE, ...Object.values(ASSETS)].filter((file) => !existsSync(file));
  if (missing.length > 0) throw new Error(`Playground files missing (run npm ci): ${missing.join(', ')}`);
}

/**
 * GET /graphql from a browser (Accept: text/html) answers with the playground; every other
 * request to /graphql falls through to Apollo. The assets live under /playground/assets/.
 */
export function mountPlayground(app: Express): void {
  checkAssets();
  const page: RequestHandler = (req, res, next) => {
    // Browsers list text/html first; GraphQL clients doing GET ask for JSON.
    if (req.accepts(['application/json', 'text/html']) !== 'text/html') {
      next();
      return;
    }
    res.set(
      'Content-Security-Policy',
      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'",
    );
    res.sendFile(PAGE);
  };
  app.get('/graphql', page);
  // Browsers ask for it on every page; an empty answer keeps a 404 out of the console.
  app.get('/favicon.ico', (_req, res) => {
    res.status(204).end();
  });
  app.get('/playground/assets/:file', (req, res, next) => {
    const file = ASSETS[req.params.file];
    if (!file) {
      next();
      return;
    }
    res.sendFile(file, { maxAge: '1h' });
  });
}
