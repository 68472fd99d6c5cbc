import { ConfigError } from './error.js';

export const ROLES = ['app', 'relay', 'worker'] as const;
export type Role = (typeof ROLES)[number];

const isRole = (value: string): value is Role => (ROLES as readonly string[]).includes(value);

/** `"app,worker"` → `['app', 'worker']`, in the fixed start order, without repeats. */
export function parseRoles(source: string, origin: string): Role[] {
  const wanted = source
    .split(',')
    .map((part) => part.trim().toLowerCase())
    .filter((part) => part !== '');
  const unknown = wanted.filter((part) => !isRole(part));
  if (wanted.length === 0 || unknown.length > 0) {
    const what = unknown.length > 0 ? `unknown role ${unknown.map((u) => `"${u}"`).join(', ')}` : 'no role';
    throw new ConfigError(
      `Invalid configuration:\n  roles from ${origin} (${JSON.stringify(source)}): ${what}; expected a comma-separated list of ${ROLES.join(', ')}`,
    );
  }
  return ROLES.filter((role) => wanted.includes(role));
}
