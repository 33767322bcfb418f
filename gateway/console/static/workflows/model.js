// The workflow document the editor works on (the same JSON the API takes:
// inputs, nodes, edges, outputs; docs/workflows.md), and pure functions over
// it. Every change returns a new document, so the editor's undo history is a
// list of documents. Nothing here touches the DOM.

import yaml from "../vendor/js-yaml.js";

export const ID = /^[a-z][a-z0-9_]{0,62}$/;

// ListNodeTypes' answer as { type: NodeType }.
export const byType = (nodeTypes) => Object.fromEntries(nodeTypes.map((t) => [t.type, t]));

// The labels of a node's outgoing ports, in order: "" is the plain edge; an
// if_else has its cases' labels and `else`, a classifier its classes; a node
// with on_error: branch also has `error`. An `end` has none.
export function branchesOf(node, types) {
  const config = node.config || {};
  let labels = [""];
  if (node.type === "end") labels = [];
  else if (types[node.type] && types[node.type].branches) {
    if (node.type === "if_else") labels = [...(config.cases || []).map((c) => (c && c.label) || ""), "else"];
    else if (node.type === "classifier") labels = (config.classes || []).map((c) => (c && c.label) || "");
  }
  return node.on_error === "branch" ? [...labels, "error"] : labels;
}

export const hasInput = (node) => node.type !== "start";

// The nodes upstream of `id` (every node a path leads from to it).
export function upstreamOf(doc, id) {
  const preds = {};
  for (const e of doc.edges || []) (preds[e.to] ||= []).push(e.from);
  const seen = new Set();
  const stack = [...(preds[id] || [])];
  while (stack.length) {
    const n = stack.pop();
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push(...(preds[n] || []));
  }
  return seen;
}

// What a template in node `id` can read: "start.question", "reply.text", ...
export function suggestions(doc, id, types) {
  const up = upstreamOf(doc, id);
  const found = [];
  for (const node of doc.nodes || []) {
    if (!up.has(node.id)) continue;
    const fields = node.type === "start"
      ? Object.keys(doc.inputs || {})
      : node.type === "end"
        ? Object.keys((node.config && node.config.outputs) || {})
        : Object.keys((types[node.type] && types[node.type].outputs) || {});
    for (const f of fields.sort()) found.push(`${node.id}.${f}`);
    if (node.on_error === "branch") found.push(`${node.id}.error`);
  }
  return found;
}

// A config with the fields a type requires, empty, for a node just dropped.
export function skeleton(schema) {
  if (!schema || typeof schema !== "object") return "";
  if (schema.default !== undefined) return structuredClone(schema.default);
  if (schema.enum) return schema.enum[0];
  const kind = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (kind) {
    case "string": return "";
    case "number": case "integer": return schema.minimum ?? 0;
    case "boolean": return false;
    case "array": return schema.minItems ? [skeleton(schema.items)] : [];
    case "object": {
      const out = {};
      for (const name of schema.required || []) out[name] = skeleton((schema.properties || {})[name]);
      return out;
    }
    default: return "";
  }
}

const STARTERS = {
  if_else: { cases: [{ label: "yes", conditions: [{ variable: "", operator: "not_empty" }] }] },
  classifier: { model: "", input: "", classes: [{ label: "first" }, { label: "second" }] },
  extractor: { model: "", input: "", schema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] } },
  llm: { model: "", messages: [{ role: "user", content: "" }] },
  map: { items: "", nodes: [{ id: "each", type: "template", config: { template: "{{ map.item }}" } }], edges: [], output: "{{ each.text }}" },
};

// A fresh id for a node of `type`: the type itself, else type_2, type_3...
export function freshId(doc, type) {
  const taken = new Set((doc.nodes || []).map((n) => n.id));
  const base = type.replace(/[^a-z0-9_]/g, "_").replace(/^[^a-z]+/, "") || "node";
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}_${i}`)) return `${base}_${i}`;
}

export function addNode(doc, type, types, position) {
  const schema = types[type] && types[type].configSchema;
  const id = freshId(doc, type);
  // A map's starter sub-graph reads {{ map.item }}: the map's own id.
  const config = JSON.parse(JSON.stringify(STARTERS[type] || skeleton(schema) || {}).replaceAll("{{ map.", `{{ ${id}.`));
  const node = { id, type };
  if (config && Object.keys(config).length) node.config = config;
  node.position = { x: Math.round(position.x), y: Math.round(position.y) };
  return { doc: { ...doc, nodes: [...(doc.nodes || []), node] }, id: node.id };
}

export function removeNode(doc, id) {
  return {
    ...doc,
    nodes: doc.nodes.filter((n) => n.id !== id),
    edges: (doc.edges || []).filter((e) => e.from !== id && e.to !== id),
  };
}

export function updateNode(doc, id, patch) {
  return { ...doc, nodes: doc.nodes.map((n) => (n.id === id ? clean({ ...n, ...patch }) : n)) };
}

// A node under a new id: its edges follow, and so does every `old.` read
// inside a `{{ }}` or `{% %}` of any template (its own sub-graph's too).
export function renameNode(doc, from, to) {
  const name = new RegExp(`(?<![\\w.])${from}\\.`, "g");
  const spans = /\{\{[\s\S]*?\}\}|\{%[\s\S]*?%\}/g;
  const rewrite = (v) => (typeof v === "string" ? v.replace(spans, (span) => span.replace(name, `${to}.`))
    : Array.isArray(v) ? v.map(rewrite)
      : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rewrite(x)])) : v);
  return {
    ...doc,
    nodes: doc.nodes.map((n) => {
      const renamed = n.id === from ? { ...n, id: to } : n;
      return renamed.config ? { ...renamed, config: rewrite(renamed.config) } : renamed;
    }),
    edges: (doc.edges || []).map((e) => ({ ...e, from: e.from === from ? to : e.from, to: e.to === from ? to : e.to })),
    ...(doc.outputs ? { outputs: rewrite(doc.outputs) } : {}),
  };
}

// After a node's branch labels changed, its edges follow: an edge whose label
// is still there keeps it; when only names changed (as many ports as before)
// an edge takes the new name of its port; an edge whose port is gone goes.
export function relabel(doc, id, types, before) {
  const node = doc.nodes.find((n) => n.id === id);
  const after = node ? branchesOf(node, types) : [];
  if (!node || (after.length === before.length && after.every((b, i) => b === before[i]))) return doc;
  const renamed = after.length === before.length;
  const edges = [];
  for (const e of doc.edges || []) {
    const branch = e.branch || "";
    if (e.from !== id || after.includes(branch) || !before.includes(branch)) edges.push(e);
    else if (renamed) {
      const label = after[before.indexOf(branch)];
      edges.push(label ? { from: e.from, to: e.to, branch: label } : { from: e.from, to: e.to });
    }
  }
  return { ...doc, edges };
}

// A name not yet among `taken`: base_1, base_2, ...
export function freshName(taken, base) {
  const used = new Set(taken);
  for (let i = 1; ; i++) if (!used.has(`${base}_${i}`)) return `${base}_${i}`;
}

const sameEdge = (a, b) => a.from === b.from && a.to === b.to && (a.branch || "") === (b.branch || "");

export function addEdge(doc, edge) {
  const e = edge.branch ? edge : { from: edge.from, to: edge.to };
  if ((doc.edges || []).some((x) => sameEdge(x, e))) return doc;
  return { ...doc, edges: [...(doc.edges || []), e] };
}

export function removeEdge(doc, edge) {
  return { ...doc, edges: (doc.edges || []).filter((x) => !sameEdge(x, edge)) };
}

export function moveNode(doc, id, x, y) {
  return updateNode(doc, id, { position: { x: Math.round(x), y: Math.round(y) } });
}

// Drops the optional fields left empty, so a document reads as a person wrote it.
function clean(node) {
  const out = { ...node };
  for (const key of ["title", "timeout_s", "retry", "on_error"]) {
    if (out[key] === undefined || out[key] === "" || out[key] === null) delete out[key];
  }
  if (out.on_error === "fail") delete out.on_error;
  if (out.config && Object.keys(out.config).length === 0) delete out.config;
  return out;
}

// Positions for the nodes that have none: columns by distance from start.
export function layout(doc) {
  if (doc.nodes.every((n) => n.position)) return doc;
  const depth = {};
  const succs = {};
  for (const e of doc.edges || []) (succs[e.from] ||= []).push(e.to);
  const start = doc.nodes.find((n) => n.type === "start");
  const queue = start ? [[start.id, 0]] : [];
  let guard = 0;
  while (queue.length && guard++ < 10000) {
    const [id, d] = queue.shift();
    if ((depth[id] ?? -1) >= d) continue;
    depth[id] = d;
    for (const next of succs[id] || []) queue.push([next, d + 1]);
  }
  const rows = {};
  return {
    ...doc,
    nodes: doc.nodes.map((n) => {
      if (n.position) return n;
      const col = depth[n.id] ?? 0;
      const row = (rows[col] = (rows[col] ?? -1) + 1);
      return { ...n, position: { x: 40 + col * 260, y: 40 + row * 140 } };
    }),
  };
}

// ValidateWorkflow's problems by node id; a shape problem's field
// ("nodes[2].config.k") is read back to the node it names.
export function problemsByNode(problems, doc) {
  const out = {};
  for (const p of problems || []) {
    let node = p.node || "";
    let field = p.field || "";
    const m = /^nodes\[(\d+)\]\.?(.*)$/.exec(field);
    if (m) {
      if (!node && doc.nodes[Number(m[1])]) node = doc.nodes[Number(m[1])].id;
      field = m[2];
    }
    (out[node] ||= []).push({ ...p, node, field });
  }
  return out;
}

// The document's and its nodes' fields in the order people write them (the
// gateway keeps a document as JSON, whose object keys have no order).
const ORDER = { doc: ["inputs", "nodes", "edges", "outputs"], node: ["id", "type", "title", "position", "config", "timeout_s", "retry", "on_error"] };
const ordered = (obj, keys) => Object.fromEntries([
  ...keys.filter((k) => k in obj).map((k) => [k, obj[k]]),
  ...Object.entries(obj).filter(([k]) => !keys.includes(k)),
]);
export const tidy = (doc) => ordered({ ...doc, nodes: (doc.nodes || []).map((n) => ordered(n, ORDER.node)) }, ORDER.doc);

// Export and import: YAML or JSON text of the document.
export const toYaml = (doc) => yaml.dump(tidy(doc), { noRefs: true, lineWidth: 100 });
export const toJson = (doc) => JSON.stringify(tidy(doc), null, 2) + "\n";

export function fromText(text) {
  let value;
  try {
    value = text.trimStart().startsWith("{") ? JSON.parse(text) : yaml.load(text, { schema: yaml.JSON_SCHEMA });
  } catch (e) {
    throw new Error(`not JSON or YAML: ${e.message}`);
  }
  // An exported Workflow (with its definition inside) or the bare document.
  if (value && typeof value === "object" && value.definition && typeof value.definition === "object") value = value.definition;
  if (!value || typeof value !== "object" || Array.isArray(value) || !Array.isArray(value.nodes)) {
    throw new Error("a workflow document is an object with a list of nodes (see docs/workflows.md)");
  }
  return value;
}

// Whether two documents are the same JSON (key order ignored).
export function same(a, b) {
  return canonical(a) === canonical(b);
}

function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}
