/** What encodes a value for the driver: a Drizzle column (a Param's encoder). */
export interface DriverEncoder {
  mapToDriverValue(value: unknown): unknown;
}

/** The last Date each encoder encoded, with its time when encoded (a Date can be changed). */
const lastDates = new WeakMap<DriverEncoder, { date: Date; time: number; encoded: unknown }>();

/**
 * `encoder.mapToDriverValue(value)`, with the last Date each encoder encoded remembered: a
 * worker's group binds its one handling time to every inbox, e-mail and history row, and a
 * DATETIME's text costs more than any other value of theirs. Equal only when it is the same
 * Date object still holding the same time.
 */
export function toDriverValue(encoder: DriverEncoder, value: unknown): unknown {
  if (!(value instanceof Date)) return encoder.mapToDriverValue(value);
  const time = value.getTime();
  const last = lastDates.get(encoder);
  if (last !== undefined && last.date === value && last.time === time) return last.encoded;
  const encoded = encoder.mapToDriverValue(value);
  lastDates.set(encoder, { date: value, time, encoded });
  return encoded;
}
