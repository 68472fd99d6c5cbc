/**
 * NODE_ENV defaults to production for the libraries as it does for the service's own settings
 * (config/index.ts): graphql-js and Express read it themselves, when they are imported, and take
 * its absence for development (graphql-js then checks every failed instanceof for a second copy
 * of itself). main.ts imports this first, before anything imports them.
 */
process.env.NODE_ENV ??= 'production';
