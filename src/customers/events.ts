import { z } from 'zod';
import { isRowId } from '../db/ids.js';

/** The events of the Customer aggregate, as they appear in the outbox and on the exchange. */
export const CUSTOMER_AGGREGATE = 'Customer';
export const CUSTOMER_CREATED = 'CustomerCreated';
export const CUSTOMER_UPDATED = 'CustomerUpdated';

/** Every event type of a customer, in the order they were introduced. */
export const CUSTOMER_EVENT_TYPES = [CUSTOMER_CREATED, CUSTOMER_UPDATED] as const;

/**
 * A customer id as the API and the events spell it: a positive decimal integer the id column
 * holds (1 … 2^64 − 1), as a string: beyond 2^53 a number would be another customer's id.
 */
export const isCustomerId = isRowId;
const customerId = z.string().refine(isCustomerId, 'Not a customer id');

/** The payload schemas: what the worker checks a stored event against before handling it. */
export const customerCreatedPayload = z.strictObject({
  customerId,
  email: z.string().min(3).max(254),
  name: z.string().min(1).max(100),
  createdAt: z.iso.datetime(),
});
export type CustomerCreatedPayload = z.infer<typeof customerCreatedPayload>;

const change = <T extends z.ZodType>(value: T) => z.strictObject({ before: value, after: value });

export const customerUpdatedPayload = z.strictObject({
  customerId,
  /** Only the fields that changed, each with its value before and after. */
  changes: z.strictObject({
    email: change(z.string().min(3).max(254)).optional(),
    name: change(z.string().min(1).max(100)).optional(),
  }),
  updatedAt: z.iso.datetime(),
});
export type CustomerUpdatedPayload = z.infer<typeof customerUpdatedPayload>;
