import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/**
 * The browser tests' Chromium: Debian's (never a downloaded one), required when CI requires its services, and
 * where their screenshots go — a temporary folder, or `docs/img/<folder>/` with KEEL_UPDATE_SCREENSHOTS=1, so a
 * test run never rewrites the docs by accident.
 */
export const chromiumPath = '/usr/bin/chromium';
export const chromiumAvailable = existsSync(chromiumPath);
if (!chromiumAvailable && process.env['KEEL_TEST_REQUIRE_SERVICES'] === '1') throw new Error(`${chromiumPath} is missing; .ci/run installs Debian's chromium`);

export function screenshotsDir(folder: string): string {
  const dir = process.env['KEEL_UPDATE_SCREENSHOTS'] === '1' ? new URL(`../../docs/img/${folder}/`, import.meta.url).pathname : `${mkdtempSync(join(tmpdir(), `keel-${folder}-`))}/`;
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}
