/**
 * Errors the service means to show to a client. Each has a stable `code` that becomes the
 * GraphQL `extensions.code`; anything else that escapes a resolver is an internal error and is
 * masked at the API edge (app/errors.ts).
 */
export type ErrorCode =
  | 'BAD_USER_INPUT'
  | 'EMAIL_TAKEN'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'SERVICE_UNAVAILABLE';

export abstract class DomainError extends Error {
  abstract readonly code: ErrorCode;
  /** Extra, client-safe details for `extensions`. */
  get details(): Record<string, unknown> {
    return {};
  }
}

/** An error about one argument, named in `extensions.field` (a dotted path, e.g. `input.email`). */
abstract class FieldError extends DomainError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
  override get details(): Record<string, unknown> {
    return { field: this.field };
  }
}

export class InvalidInputError extends FieldError {
  override readonly name = 'InvalidInputError';
  readonly code = 'BAD_USER_INPUT';
}

export class EmailTakenError extends DomainError {
  override readonly name = 'EmailTakenError';
  readonly code = 'EMAIL_TAKEN';
  constructor(options?: ErrorOptions) {
    super('A customer with this e-mail address already exists', options);
  }
  override get details() {
    return { field: 'input.email' };
  }
}

export class ForbiddenError extends DomainError {
  override readonly name = 'ForbiddenError';
  readonly code = 'FORBIDDEN';
  constructor() {
    super(
      'This operator operation needs the admin token: start the service with ADMIN_TOKEN set (16 or more characters) and send the header Authorization: Bearer <ADMIN_TOKEN>',
    );
  }
}

export class NotFoundError extends FieldError {
  override readonly name = 'NotFoundError';
  readonly code = 'NOT_FOUND';
}

/** The state the client based its request on has moved on (lost-update protection). */
export class ConflictError extends DomainError {
  override readonly name = 'ConflictError';
  readonly code = 'CONFLICT';
  constructor(
    message: string,
    private readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
  override get details() {
    return this.extra;
  }
}

/** A dependency is away for now: HTTP 503 with Retry-After; retrying later is the answer. */
export class UnavailableError extends DomainError {
  override readonly name = 'UnavailableError';
  readonly code = 'SERVICE_UNAVAILABLE';
}
