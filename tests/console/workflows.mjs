// The workflow editor and run view in a real browser: build start -> llm ->
// answer by dragging nodes from the palette and connecting their ports, undo
// and redo, fill the forms (with the template autocompletion), see a dangling
// reference flagged on its node and field and fix it, save, publish, run the
// published version and watch the nodes light up with the text streaming in,
// open the run again from the past runs, save a second version and diff the
// two, export the workflow as JSON and YAML and import it back unchanged, and
// open it with a user key: read-only, but it runs.
// Prints one JSON line per step (browser.mjs); SCREENSHOTS=dir saves the
// editor and a finished run.

import { readFileSync } from "node:fs";
import { open, run, shot, signIn, step } from "./browser.mjs";

// JSON with every object's keys sorted (the gateway's documents have no key order).
const canonical = (v) => JSON.stringify(v, (_, x) => (x && typeof x === "object" && !Array.isArray(x)
  ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x));

const node = (id) => `#wf-canvas .drawflow-node[data-node=${id}]`;

async function connect(page, from, to, port = 1) {
  const out = await page.locator(`${node(from)} .output_${port}`).boundingBox();
  const into = await page.locator(`${node(to)} .input_1`).boundingBox();
  await page.mouse.move(out.x + out.width / 2, out.y + out.height / 2);
  await page.mouse.down();
  await page.mouse.move(into.x + into.width / 2, into.y + into.height / 2, { steps: 10 });
  await page.mouse.up();
}

async function select(page, id) {
  await page.click(`${node(id)} .wf-node-title`);
  await page.waitForSelector(`#wf-inspector[data-node=${id}]`);
}

// The editor's document as the gateway would save it, read from an export.
async function exported(page, button) {
  const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
  return { name: download.suggestedFilename(), text: readFileSync(await download.path(), "utf8") };
}

async function main(page) {
  await signIn(page, process.env.ADMIN_KEY);
  await open(page, "workflows");
  await page.click("[data-template=blank]");
  await page.waitForSelector(node("start"));

  // Two nodes dragged from the palette, one undone and redone, then connected.
  const canvas = page.locator("#wf-canvas");
  await page.locator(".wf-palette-item[data-type=llm]").dragTo(canvas, { targetPosition: { x: 320, y: 160 } });
  await page.waitForSelector(node("llm"));
  await page.locator(".wf-palette-item[data-type=answer]").dragTo(canvas, { targetPosition: { x: 580, y: 160 } });
  await page.waitForSelector(node("answer"));
  await page.click("#wf-undo");
  await page.waitForSelector(node("answer"), { state: "detached" });
  await page.click("#wf-canvas"); // the shortcuts act on the canvas, not in a field
  await page.keyboard.press("Control+Shift+Z");
  await page.waitForSelector(node("answer"));
  // After a redraw (an undo) nothing is selected, so Delete deletes nothing;
  // Delete on a selected node removes it, and undo brings it back.
  await page.click(`${node("llm")} .wf-node-title`);
  await page.keyboard.press("Control+Z"); // the answer node's drop undone: a redraw
  await page.waitForSelector(node("answer"), { state: "detached" });
  await page.keyboard.press("Delete");
  await page.waitForSelector(node("llm"));
  await page.keyboard.press("Control+Shift+Z");
  await page.click(`${node("answer")} .wf-node-title`);
  await page.keyboard.press("Delete");
  await page.waitForSelector(node("answer"), { state: "detached" });
  await page.click("#wf-undo");
  await page.waitForSelector(node("answer"));
  await connect(page, "start", "llm");
  await connect(page, "llm", "answer");
  await page.waitForFunction(() => document.querySelectorAll("#wf-canvas .connection").length === 2);
  step("built", { nodes: await page.locator("#wf-canvas .drawflow-node").count() });

  // The llm node's form, from its schema: a model and a message read from start.
  await select(page, "llm");
  await page.fill("#wf-inspector input[data-field=model]", "mock-chat");
  const content = page.locator("#wf-inspector textarea[data-field=content]");
  await content.click();
  await page.keyboard.type("Repeat after me: {{ sta");
  await page.waitForSelector(".wf-suggest >> text=start.question");
  await page.keyboard.press("Enter");
  const message = await content.inputValue();
  if (message !== "Repeat after me: start.question }}".replace("start", "{{ start")) throw new Error(`autocompletion gave ${JSON.stringify(message)}`);

  // A dangling reference: flagged on the node and on the field; then fixed.
  await select(page, "answer");
  await page.fill("#wf-inspector textarea[data-field=text]", "{{ llm.txt }}");
  await page.waitForSelector(`${node("answer")}.has-problem`);
  const flagged = await page.textContent("#wf-inspector .wf-problem");
  if (!flagged.includes("txt")) throw new Error(`the field's problem: ${flagged}`);
  await page.waitForSelector("#wf-check.bad");
  await page.fill("#wf-inspector textarea[data-field=text]", "{{ llm.text }}");
  await page.waitForSelector("#wf-check >> text=valid");
  if (await page.locator("#wf-canvas .has-problem").count()) throw new Error("a node is still flagged");
  step("validated", { problem: flagged });
  await page.keyboard.press("Escape");
  await shot(page, "workflow-editor", { fullPage: false });

  // Save (version 1) and publish it.
  await page.fill("#wf-new-id", "echo-flow");
  await page.click("#wf-save");
  await page.waitForSelector("#wf-notice >> text=Saved as version 1");
  await page.click("#wf-publish");
  await page.waitForSelector("#wf-published >> text=published v1");
  step("saved and published");

  // Run the published version: the nodes light up and the text streams in.
  await page.click("#wf-tab-run");
  await page.fill("[data-input=question]", "one two three four five six seven eight");
  await page.selectOption("#wf-run-version", "published");
  await page.click("#wf-run-start");
  const lengths = [];
  let sawRunning = false;
  for (let i = 0; i < 60; i++) {
    const text = await page.locator(".wf-run-text").first().textContent().catch(() => "");
    lengths.push(text.length);
    sawRunning ||= (await page.locator("#wf-canvas .st-running").count()) > 0;
    if ((await page.textContent("#wf-run-status").catch(() => "")) === "succeeded") break;
    await page.waitForTimeout(20);
  }
  await page.waitForSelector("#wf-run-status >> text=succeeded");
  for (const id of ["start", "llm", "answer"]) await page.waitForSelector(`${node(id)}.st-succeeded`);
  const distinct = new Set(lengths.filter((n) => n > 0)).size;
  if (distinct < 3) throw new Error(`the text did not stream (${lengths.join(",")})`);
  const runId = (await page.textContent("#wf-run-result .mono")).trim();
  await page.click(`${node("llm")} .wf-node-title`);
  await page.waitForSelector("#wf-run-node[data-node=llm] >> text=Latency");
  const tokens = await page.textContent("#wf-run-node dd:nth-of-type(3)");
  step("ran", { distinctLengths: distinct, sawRunning, tokens, runId });
  await page.keyboard.press("Escape");
  await shot(page, "workflow-run", { fullPage: false });

  // The same run again, from the past runs, in a fresh editor.
  await open(page, "workflows?open=echo-flow");
  await page.waitForSelector(node("answer"));
  await page.click("#wf-tab-run");
  await page.click(`#wf-runs >> text=${runId}`);
  await page.waitForSelector(`#wf-run-result .mono >> text=${runId}`);
  for (const id of ["start", "llm", "answer"]) await page.waitForSelector(`${node(id)}.st-succeeded`);
  const replayed = await page.textContent(".wf-run-text");
  if (!replayed.includes("one")) throw new Error(`the past run's text: ${replayed}`);
  step("past run", { runId });

  // A second version, and the diff of the two.
  await page.click("#wf-tab-edit");
  await select(page, "answer");
  await page.fill("#wf-inspector textarea[data-field=text]", "Echo: {{ llm.text }}");
  await page.keyboard.press("Control+s");
  await page.waitForSelector("#wf-notice >> text=Saved as version 2");
  await page.click("#wf-tab-versions");
  await page.check("#wf-versions tr[data-version='1'] input[name=wf-old]");
  await page.check("#wf-versions tr[data-version='2'] input[name=wf-new]");
  const added = await page.textContent("#wf-diff .add");
  if (!added.includes("Echo: {{ llm.text }}")) throw new Error(`the diff: ${added}`);
  step("versions", { added: added.trim() });

  // Export and import back: unchanged (the editor still matches what was saved).
  const asJson = await exported(page, "#wf-export-json");
  const saved = await page.evaluate(async () => {
    const r = await fetch("/v1/workflows/echo-flow", { headers: { authorization: `Bearer ${sessionStorage.getItem("infergate.key")}` } });
    return (await r.json()).definition;
  });
  if (canonical(JSON.parse(asJson.text)) !== canonical(saved)) throw new Error("the JSON export differs from the saved definition");
  const asYaml = await exported(page, "#wf-export-yaml");
  for (const file of [asJson, asYaml]) {
    await page.setInputFiles("#wf-import-file", { name: file.name, mimeType: "text/plain", buffer: Buffer.from(file.text) });
    await page.waitForSelector(`#wf-notice >> text=Imported ${file.name}`);
    await page.waitForSelector("#wf-save >> text=Saved"); // nothing to save: the same document
  }
  const again = await exported(page, "#wf-export-json");
  if (again.text !== asJson.text) throw new Error("a re-imported workflow exports differently");
  step("export and import", { files: [asJson.name, asYaml.name], bytes: asJson.text.length });

  // The same file imported as a new workflow draws what it holds.
  await page.click("#wf-close"); // saved: no question asked
  await page.setInputFiles("#wf-import-new", { name: asYaml.name, mimeType: "text/plain", buffer: Buffer.from(asYaml.text) });
  await page.waitForSelector(node("answer"));
  const drawn = [await page.locator("#wf-canvas .drawflow-node").count(), await page.locator("#wf-canvas .connection").count()];
  if (drawn.join() !== "3,2") throw new Error(`the imported workflow drew ${drawn} nodes, edges`);
  page.once("dialog", (d) => d.accept()); // unsaved: leaving asks first
  await page.click("#wf-close");

  // A branching node has a port per label; renaming a label keeps its edge.
  await page.click("[data-template=rag]");
  await page.waitForSelector(`${node("check")} .output_1[data-branch=found]`);
  await page.waitForSelector(`${node("check")} .output_2[data-branch=else]`);
  await select(page, "check");
  await page.fill("#wf-inspector input[data-field=label]", "hit");
  await page.waitForSelector(`${node("check")} .output_1[data-branch=hit]`);
  const edges = await page.locator("#wf-canvas .connection").count();
  if (edges !== 5) throw new Error(`renaming a branch lost an edge: ${edges} left`);
  page.once("dialog", (d) => d.accept());
  await page.click("#wf-close");
  await page.waitForSelector("#wf-new");
  step("branches", { drawn, edges });

  // A user key: the workflow opens read-only, and runs.
  await page.click("text=Sign out");
  await signIn(page, process.env.USER_KEY);
  await open(page, "workflows?open=echo-flow");
  await page.waitForSelector(node("answer"));
  await page.waitForSelector("#wf-read-only");
  if (await page.locator("#wf-save").count()) throw new Error("a user key can save");
  await page.click("#wf-tab-run");
  await page.fill("[data-input=question]", "from a user");
  await page.click("#wf-run-start");
  await page.click("#wf-tab-edit"); // another tab meanwhile does not stop the run
  await page.click("#wf-tab-run");
  await page.waitForSelector("#wf-run-status >> text=succeeded");
  await page.click(`${node("answer")} .wf-node-title`);
  await page.waitForSelector("#wf-run-node[data-node=answer] >> text=Echo: ");
  step("user runs read-only");
}

await run(main, { width: 1440, height: 900 });
