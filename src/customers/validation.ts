import { z } from 'zod';
import { InvalidInputError } from '../errors.js';

export interface CreateCustomerInput {
  readonly email: string;
  readonly name: string;
}

const createCustomerSchema = z.object({
  email: z
    .string()
    .trim()
    .min(1, 'E-mail is required')
    .max(254, 'E-mail must be at most 254 characters')
    .pipe(z.email('E-mail is not a valid address')),
  name: z
    .string()
    .trim()
    .min(1, 'Name is required')
    .max(100, 'Name must be at most 100 characters')
    // Control characters have no business in a name and break e-mail headers downstream.
    .regex(/^[^\p{Cc}]*$/u, 'Name must not contain control characters'),
});

/** Trims and checks a createCustomer input; the first problem becomes a BAD_USER_INPUT error. */
export function parseCreateCustomerInput(raw: CreateCustomerInput): CreateCustomerInput {
  const parsed = createCustomerSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidInputError(`input.${String(issue?.path[0] ?? '')}`, issue?.message ?? 'Invalid input');
  }
  return parsed.data;
}

/** The form in which e-mail addresses are compared: trimmed and lower-cased. */
export const normalizeEmail = (email: string): string => email.trim().toLowerCase();
