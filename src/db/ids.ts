/**
 * Row ids of BIGINT UNSIGNED columns, exactly. JavaScript numbers are exact only up to 2^53,
 * and a column holds up to 2^64 − 1: `Number("9007199254740993")` is 9007199254740992, another
 * customer. So an id the service does not only count with travels as a decimal string (in the
 * API, events and cursors) and as a bigint (to and from the database), never as a number.
 */

/** The largest value a BIGINT UNSIGNED column holds: 2^64 − 1. */
export const BIGINT_UNSIGNED_MAX = 2n ** 64n - 1n;

/** A positive decimal integer as the API spells it: no sign, no leading zero, at most 20 digits. */
const DECIMAL_ID = /^[1-9][0-9]{0,19}$/;

/** Whether `text` is an id a BIGINT UNSIGNED AUTO_INCREMENT column can hold: 1 … 2^64 − 1. */
export const isRowId = (text: string): boolean =>
  DECIMAL_ID.test(text) && BigInt(text) <= BIGINT_UNSIGNED_MAX;

/**
 * The id of the row an INSERT gave an AUTO_INCREMENT id, as a decimal string. mysql2 (with
 * supportBigNumbers) reports it as a number while that is exact and as a decimal string beyond,
 * read as a signed 64-bit integer: an id above 2^63 − 1 arrives negative, and is taken modulo 2^64.
 */
export function insertedRowId(insertId: number | string | bigint): string {
  let id = BigInt(insertId);
  if (id < 0n) id += 2n ** 64n;
  if (id < 1n || id > BIGINT_UNSIGNED_MAX) throw new Error(`An INSERT reported the id ${String(insertId)}`);
  return id.toString();
}
