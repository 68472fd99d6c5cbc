import { accessSync, constants } from 'node:fs';

/** The programs the private servers need, and the Debian package that provides each. */
export const PROGRAMS = {
  mariadbd: { path: '/usr/sbin/mariadbd', pkg: 'mariadb-server' },
  mariadbInstallDb: { path: '/usr/bin/mariadb-install-db', pkg: 'mariadb-server' },
  // The scripts under /usr/lib/rabbitmq/bin, not the /usr/sbin wrappers: as root those switch to
  // the rabbitmq user and its home (and Erlang cookie), which a private node must not share.
  rabbitmqServer: { path: '/usr/lib/rabbitmq/bin/rabbitmq-server', pkg: 'rabbitmq-server' },
  rabbitmqctl: { path: '/usr/lib/rabbitmq/bin/rabbitmqctl', pkg: 'rabbitmq-server' },
} as const;

/** Lists what is missing, with what to install; empty when the run can start. */
export function missingPrograms(): string[] {
  const missing: string[] = [];
  for (const { path, pkg } of Object.values(PROGRAMS)) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      missing.push(`${path} (Debian package ${pkg}: apt-get install ${pkg})`);
    }
  }
  return missing;
}
