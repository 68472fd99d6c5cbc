import { z } from 'zod';
import { InvalidInputError } from '../errors.js';
import { invisibleTextProblem } from './visible-text.js';

export interface CreateCustomerInput {
  readonly email: string;
  readonly name: string;
}

export interface UpdateCustomerInput {
  readonly id: string;
  readonly email?: string | null;
  readonly name?: string | null;
  readonly expectedSequence?: number | null;
}

const email = z
  .string()
  .trim()
  .min(1, 'E-mail is required')
  .max(254, 'E-mail must be at most 254 characters')
  .pipe(z.email('E-mail is not a valid address'));
const name = z
  .string()
  .trim()
  .min(1, 'Name is required')
  .max(100, 'Name must be at most 100 characters')
  // Shown to people and printed in e-mail headers: text a person can see (visible-text.ts).
  .superRefine((value, ctx) => {
    const problem = invisibleTextProblem(value);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  });

const createCustomerSchema = z.object({ email, name });

const updateCustomerSchema = z
  .object({
    id: z.string(),
    email: email.nullish().transform((v) => v ?? undefined),
    name: name.nullish().transform((v) => v ?? undefined),
    expectedSequence: z
      .number()
      .int('expectedSequence must be a whole number')
      .min(1, 'expectedSequence must be at least 1')
      .nullish()
      .transform((v) => v ?? undefined),
  })
  .refine((v) => v.email !== undefined || v.name !== undefined, {
    message: 'Give a new email, a new name, or both',
    path: ['email'],
  });

function parse<T>(schema: z.ZodType<T>, raw: unknown): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidInputError(`input.${String(issue?.path[0] ?? '')}`, issue?.message ?? 'Invalid input');
  }
  return parsed.data;
}

/** Trims and checks a createCustomer input; the first problem becomes a BAD_USER_INPUT error. */
export const parseCreateCustomerInput = (raw: CreateCustomerInput): CreateCustomerInput =>
  parse(createCustomerSchema, raw);

/** The same for updateCustomer: at least one of email and name; the id is checked by the caller. */
export const parseUpdateCustomerInput = (
  raw: UpdateCustomerInput,
): { id: string; email?: string; name?: string; expectedSequence?: number } =>
  parse(updateCustomerSchema, raw);

/** The form in which e-mail addresses are compared: trimmed and lower-cased. */
export const normalizeEmail = (email: string): string => email.trim().toLowerCase();
