// The workflow editor's document functions (gateway/console/static/workflows/model.js),
// run by `node --test` from tests/console/test_console.py.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as m from "../../gateway/console/static/workflows/model.js";

const TYPES = {
  start: { type: "start", outputs: {} },
  llm: { type: "llm", outputs: { text: "string", usage: "object" }, configSchema: { type: "object", required: ["model", "messages"], properties: { model: { type: "string" }, messages: { type: "array", minItems: 1, items: { type: "object", required: ["role", "content"], properties: { role: { enum: ["system", "user"] }, content: { type: "string" } } } } } } },
  if_else: { type: "if_else", branches: true, outputs: { branch: "string" } },
  classifier: { type: "classifier", branches: true, outputs: { label: "string" } },
  answer: { type: "answer", outputs: { text: "string" } },
  end: { type: "end", outputs: {} },
};

const DOC = {
  inputs: { question: { type: "string", required: true } },
  nodes: [
    { id: "start", type: "start" },
    { id: "check", type: "if_else", config: { cases: [{ label: "long" }, { label: "short" }] } },
    { id: "reply", type: "llm", on_error: "branch", config: { model: "m", messages: [{ role: "user", content: "{{ start.question }}" }] } },
    { id: "say", type: "answer", config: { text: "{{ reply.text }} {{- reply.usage }}" } },
  ],
  edges: [{ from: "start", to: "check" }, { from: "check", to: "reply", branch: "long" }, { from: "reply", to: "say" }],
  outputs: { answer: "{{ say.text }}" },
};

test("a node's ports are its branch labels", () => {
  assert.deepEqual(m.branchesOf(DOC.nodes[1], TYPES), ["long", "short", "else"]);
  assert.deepEqual(m.branchesOf(DOC.nodes[2], TYPES), ["", "error"]);
  assert.deepEqual(m.branchesOf({ id: "c", type: "classifier", config: { classes: [{ label: "a" }] } }, TYPES), ["a"]);
  assert.deepEqual(m.branchesOf({ id: "e", type: "end" }, TYPES), []);
});

test("templates are offered what upstream nodes produce, and nothing else", () => {
  assert.deepEqual(m.suggestions(DOC, "say", TYPES), ["start.question", "check.branch", "reply.text", "reply.usage", "reply.error"]);
  assert.deepEqual(m.suggestions(DOC, "check", TYPES), ["start.question"]);
  assert.deepEqual(m.suggestions(DOC, "start", TYPES), []);
});

test("a dropped node gets a fresh id and the fields its schema requires", () => {
  const once = m.addNode(DOC, "llm", TYPES, { x: 10.4, y: 20.6 });
  assert.equal(once.id, "llm");
  const twice = m.addNode(once.doc, "llm", TYPES, { x: 0, y: 0 });
  assert.equal(twice.id, "llm_2");
  const added = twice.doc.nodes.at(-1);
  assert.deepEqual(added.config, { model: "", messages: [{ role: "user", content: "" }] });
  assert.deepEqual(once.doc.nodes.at(-1).position, { x: 10, y: 21 });
  assert.deepEqual(m.skeleton(TYPES.llm.configSchema), { model: "", messages: [{ role: "system", content: "" }] });
});

test("a rename carries the edges and the references downstream", () => {
  const doc = m.renameNode(DOC, "reply", "answer_model");
  assert.deepEqual(doc.edges.map((e) => [e.from, e.to]), [["start", "check"], ["check", "answer_model"], ["answer_model", "say"]]);
  assert.equal(doc.nodes[3].config.text, "{{ answer_model.text }} {{- answer_model.usage }}");
  assert.equal(doc.nodes[2].config.messages[0].content, "{{ start.question }}"); // others untouched
  assert.equal(DOC.nodes[2].id, "reply"); // the old document is not changed
});

test("a rename reaches every read of the node, its own sub-graph's too", () => {
  const doc = { nodes: [
    { id: "a", type: "llm", config: { text: "{{ a.text ~ start.a }} {% if default(a.x) %}{{ data.a }}{% endif %} a.text" } },
  ], edges: [] };
  assert.equal(m.renameNode(doc, "a", "b").nodes[0].config.text, "{{ b.text ~ start.a }} {% if default(b.x) %}{{ data.a }}{% endif %} a.text");
});

test("edges follow their port when a node's branch labels change", () => {
  const renamed = m.updateNode(DOC, "check", { config: { cases: [{ label: "huge" }, { label: "short" }] } });
  assert.deepEqual(m.relabel(renamed, "check", TYPES, ["long", "short", "else"]).edges[1], { from: "check", to: "reply", branch: "huge" });
  const withShort = { ...DOC, edges: [...DOC.edges, { from: "check", to: "say", branch: "short" }] };
  const fewer = m.updateNode(withShort, "check", { config: { cases: [{ label: "short" }] } });
  // The "long" case removed: its edge goes; the "short" one stays on its label.
  assert.deepEqual(m.relabel(fewer, "check", TYPES, ["long", "short", "else"]).edges.filter((e) => e.from === "check"),
    [{ from: "check", to: "say", branch: "short" }]);
  const withError = { ...DOC, edges: [...DOC.edges, { from: "reply", to: "say", branch: "error" }] };
  const failing = m.updateNode(withError, "reply", { on_error: "fail" });
  assert.deepEqual(m.relabel(failing, "reply", TYPES, ["", "error"]).edges.filter((e) => e.from === "reply"), [{ from: "reply", to: "say" }]);
  assert.equal(m.relabel(DOC, "check", TYPES, ["long", "short", "else"]), DOC); // nothing changed
});

test("fresh names skip the ones in use", () => {
  assert.equal(m.freshName(["input_1", "input_3"], "input"), "input_2");
  assert.equal(m.freshName([], "output"), "output_1");
});

test("edges: no duplicates; removing a node takes its edges", () => {
  assert.equal(m.addEdge(DOC, { from: "start", to: "check", branch: "" }), DOC);
  assert.equal(m.addEdge(DOC, { from: "check", to: "say", branch: "short" }).edges.length, 4);
  const doc = m.removeNode(DOC, "reply");
  assert.deepEqual(doc.edges, [{ from: "start", to: "check" }]);
});

test("optional fields left empty are dropped", () => {
  const doc = m.updateNode(DOC, "say", { title: "", on_error: "fail", timeout_s: undefined, retry: undefined });
  assert.deepEqual(Object.keys(doc.nodes[3]).sort(), ["config", "id", "type"]);
});

test("nodes without a place are laid out in columns by depth", () => {
  const doc = m.layout(DOC);
  const at = Object.fromEntries(doc.nodes.map((n) => [n.id, n.position]));
  assert.ok(at.start.x < at.check.x && at.check.x < at.reply.x && at.reply.x < at.say.x);
  const placed = m.layout(doc);
  assert.equal(placed, doc);
});

test("problems are filed under the node they name, shape problems by index", () => {
  const found = m.problemsByNode([
    { node: "reply", field: "config.model", message: "a" },
    { node: "", field: "nodes[3].timeout_s", message: "b" },
    { node: "", field: "edges[0].to", message: "c" },
  ], DOC);
  assert.deepEqual(found.reply, [{ node: "reply", field: "config.model", message: "a" }]);
  assert.deepEqual(found.say, [{ node: "say", field: "timeout_s", message: "b" }]);
  assert.deepEqual(found[""], [{ node: "", field: "edges[0].to", message: "c" }]);
});

test("export and import give the same document, in JSON and YAML", () => {
  for (const text of [m.toJson(DOC), m.toYaml(DOC)]) assert.ok(m.same(m.fromText(text), DOC));
  assert.deepEqual(Object.keys(JSON.parse(m.toJson(DOC))), ["inputs", "nodes", "edges", "outputs"]);
  assert.ok(m.same(m.fromText(JSON.stringify({ name: "workflows/x", definition: DOC })), DOC));
  assert.throws(() => m.fromText("nodes: [unclosed"), /not JSON or YAML/);
  assert.throws(() => m.fromText("[1, 2]"), /list of nodes/);
  // YAML's JSON schema: no dates or other types JSON cannot hold.
  assert.equal(m.fromText("nodes: []\nwhen: 2024-01-01").when, "2024-01-01");
});
