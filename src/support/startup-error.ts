/**
 * A start-up failure the operator fixes outside the code: a server that is not running, a port
 * that is taken. The message says what is missing and how to provide it; main.ts logs it as one
 * line, without the stack trace, which would only bury it. The driver's error stays as `cause`.
 */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}
