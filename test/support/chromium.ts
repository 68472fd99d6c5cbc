import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Debian's Chromium, headless, for the browser tests; fails with the way to install it. The
 * flags keep Chromium from reaching for Google's services, which this network refuses.
 */
export async function launchChromium(test: string): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${test} drives Debian's Chromium, and there is none at ${CHROMIUM}. ` +
        'Install it with `apt-get install -y chromium` (as root), or point CHROMIUM_PATH at a Chromium.',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
