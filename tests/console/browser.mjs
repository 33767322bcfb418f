// What the browser suites share: Chromium (Debian's, driven by playwright-core)
// with a page that collects every problem (a page error, a console error such
// as a CSP violation, a 5xx), signing in, opening a console page, a JSON line
// per step and screenshots when SCREENSHOTS=dir. Run by tests/console/test_console.py,
// which starts the gateway and passes BASE_URL, ADMIN_KEY and USER_KEY.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../gateway/console/package.json", import.meta.url));
const { chromium } = require("playwright-core");

export const BASE = process.env.BASE_URL;
export const SHOTS = process.env.SCREENSHOTS || "";
export const TIMEOUT = 15000;

export function step(name, detail = {}) {
  console.log(JSON.stringify({ step: name, ...detail }));
}

export async function shot(page, name, options = { fullPage: true }) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), ...options });
}

export async function signIn(page, key) {
  await page.goto(`${BASE}/console/`);
  await page.fill("#key", key);
  await page.click("button[type=submit]");
  await page.waitForSelector("nav .who", { timeout: TIMEOUT });
}

export async function open(page, path) {
  await page.goto(`${BASE}/console/#/${path}`);
  await page.waitForSelector(`main#page[data-page=${path.split("?")[0]}]`, { timeout: TIMEOUT });
}

// Runs `body(page, problems)` in a fresh browser; exits 1 on the first failure
// or if any problem was seen.
export async function run(body, { width = 1360, height = 900 } = {}) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  try {
    const context = await browser.newContext({ viewport: { width, height }, acceptDownloads: true });
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    // Console errors (a CSP violation is one) fail the run; an HTTP error the page
    // expects (the 401 before sign-in, a 403 it explains) is logged by Chromium as
    // "Failed to load resource" and judged by its status instead: no 5xx allowed.
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
    });
    page.on("response", (r) => r.status() >= 500 && problems.push(`HTTP ${r.status()} from ${r.url()}`));
    page.setDefaultTimeout(TIMEOUT);
    await body(page);
    if (problems.length) throw new Error(problems.join("\n"));
  } catch (e) {
    console.log(JSON.stringify({ failed: e.message.split("\n").slice(0, 5).join(" | ") }));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
