// The console in a real browser (Debian's Chromium driven by playwright-core):
// sign in, healthy mock models, a streamed chat, an upload found by search, an
// app created and chatted with, a usage chart of those calls, and a user key
// refused the admin pages. Run by tests/console/test_console.py, which starts
// the gateway and passes BASE_URL, ADMIN_KEY and USER_KEY; with SCREENSHOTS=dir
// it saves a PNG of each page there (`make console-screenshots`).
// Prints one JSON line per step; exits 1 on the first failure (browser.mjs).

import { SHOTS, open, run, shot, signIn, step } from "./browser.mjs";

async function main(page) {
  // Sign in (the key never appears in the URL).
  await signIn(page, process.env.ADMIN_KEY);
  if (page.url().includes(process.env.ADMIN_KEY)) throw new Error("the key is in the URL");
  step("signed in", { who: await page.textContent("nav .who") });

  // Models: the mock deployments are healthy, and routing shows the exact body.
  await open(page, "models");
  await page.waitForSelector("text=mock-fast");
  const healthy = await page.locator("span.pill.good", { hasText: "healthy" }).count();
  if (healthy < 2) throw new Error(`expected the mock deployments healthy, saw ${healthy}`);
  await page.click("text=Show routing");
  await page.waitForSelector("#route-chosen");
  step("models", { healthy, chosen: await page.textContent("#route-chosen") });

  // Playground: tokens arrive one by one.
  await open(page, "playground");
  await page.selectOption("#playground-model", "mock-chat");
  await page.fill("#playground-input", "one two three four five six");
  const lengths = [];
  await page.click("#playground-send");
  for (let i = 0; i < 40; i++) {
    lengths.push((await page.textContent("#playground-transcript")).length);
    await page.waitForTimeout(25);
  }
  await page.waitForSelector("#playground-stats >> text=/first token/i");
  const grew = new Set(lengths).size;
  if (grew < 3) throw new Error(`the transcript did not grow token by token (${lengths.join(",")})`);
  step("playground", { distinctLengths: grew, stats: await page.textContent("#playground-stats") });
  await shot(page, "playground");

  // Datasets: upload a file, find it by search.
  await open(page, "datasets");
  await page.fill("#collection-new-id", "handbook");
  await page.click("#collection-create");
  await page.waitForSelector("#collections-table >> text=handbook");
  await page.click("#collections-table >> text=handbook");
  await page.setInputFiles("#file-input", {
    name: "leave.md",
    mimeType: "text/markdown",
    buffer: Buffer.from("# Leave\n\nEmployees get thirty days of paid leave every year.\n"),
  });
  await page.waitForSelector("#upload-list >> text=/chunk/i");
  await page.waitForSelector("#documents-table >> text=leave.md");
  await page.fill("#search-text", "paid leave");
  await page.selectOption("#search-mode", "lexical");
  await page.click("#search-run");
  await page.waitForSelector("#search-results >> text=thirty days");
  const marks = await page.locator("#search-results mark").count();
  step("datasets", { marks });
  await shot(page, "datasets");

  // Apps: create one over the collection and chat with it; citations show.
  await open(page, "apps");
  await page.click("#app-new");
  await page.fill("#app-id", "helpdesk");
  await page.selectOption("#app-model", "mock-chat");
  await page.selectOption("#app-collections", ["collections/handbook"]);
  await page.click("#app-save");
  await page.waitForSelector("#apps-table >> text=helpdesk");
  await page.click("#apps-table >> text=helpdesk");
  await page.fill("#app-chat-input", "how many days of paid leave");
  await page.click("#app-chat-send");
  await page.waitForSelector("#app-citations >> text=thirty days");
  await page.waitForFunction(() => document.querySelector("#app-chat-transcript").textContent.trim().length > 0);
  await page.waitForSelector("#app-chat-stop:disabled"); // the answer has ended
  step("apps", { transcript: (await page.textContent("#app-chat-transcript")).slice(0, 80) });
  await shot(page, "apps");

  // Settings the form does not show (rerank) survive a save from it.
  const appUrl = `${process.env.BASE_URL}/v1/apps/helpdesk`;
  const auth = { authorization: `Bearer ${process.env.ADMIN_KEY}`, "content-type": "application/json" };
  const patched = await fetch(`${appUrl}?update_mask=retrieval`, {
    method: "PATCH", headers: auth,
    body: JSON.stringify({ retrieval: { collections: ["collections/handbook"], rerank: true, rerankTopN: 7 } }),
  });
  if (!patched.ok) throw new Error(`PATCH app: ${patched.status} ${await patched.text()}`);
  await page.reload(); // the page shows the app as changed
  await page.click('#apps-table button[data-app="helpdesk"][data-action="edit"]');
  await page.fill("#app-display-name", "Help desk");
  await page.click("#app-save");
  await page.waitForSelector("#app-saved");
  const saved = await (await fetch(appUrl, { headers: auth })).json();
  if (saved.displayName !== "Help desk" || !saved.retrieval.rerank || saved.retrieval.rerankTopN !== 7) {
    throw new Error(`the console's save lost settings it does not show: ${JSON.stringify(saved)}`);
  }

  // Tasks: submit one from the page; it runs (in-process worker) and lists as done.
  await open(page, "tasks");
  await page.click("summary >> text=Submit a task");
  await page.fill("#task-type", "noop");
  await page.fill("#task-payload", "{}");
  await page.click("#task-submit");
  await page.waitForSelector("#tasks-table >> text=noop");
  await page.waitForSelector("#tasks-table >> text=SUCCESS", { timeout: 20000 });
  await shot(page, "tasks");
  step("tasks");

  // Usage: the calls just made are in the chart and the table.
  await page.waitForTimeout(1500); // usage is written in batches (flush interval)
  await open(page, "usage");
  await page.waitForSelector("#usage-chart canvas");
  await page.waitForSelector("#usage-table >> text=mock-chat");
  step("usage");
  await shot(page, "usage");

  // Audit and keys (admin).
  await open(page, "audit");
  await page.waitForSelector("#audit-table >> text=CreateApp");
  await shot(page, "audit");
  await open(page, "keys");
  await page.waitForSelector("#tenants-table >> text=default");
  await shot(page, "keys");
  step("admin pages");

  // Models again, now that calls were made: their latencies, a few polls charted.
  if (SHOTS) {
    await open(page, "models");
    await page.waitForTimeout(6500);
    await page.click("text=Show routing");
    await page.waitForSelector("#route-chosen");
    await shot(page, "models");
  }

  // A user key: no admin pages in the nav, and a clear refusal when opened.
  await page.click("text=Sign out");
  await signIn(page, process.env.USER_KEY);
  const adminLinks = await page.locator("nav a", { hasText: "Keys and tenants" }).count();
  await open(page, "keys");
  await page.waitForSelector("text=/needs the admin role/");
  if (adminLinks !== 0) throw new Error("a user key sees the admin pages in the nav");
  step("user refused admin pages");
}

await run(main);
