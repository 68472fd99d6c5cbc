/**
 * JSON with object keys sorted, so equal values give equal text: MySQL stores JSON normalized
 * (keys reordered), MariaDB as written, and a hash of a request must not depend on key order.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );
}
