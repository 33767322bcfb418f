// The editor's side panel: the selected node (id, title, its config as a form
// from its type's schema, timeout, retries, what a failure does), or, with no
// node selected, the workflow's own inputs and outputs.

import { html, useEffect, useState } from "../ui.js";
import { ID, branchesOf, freshName, relabel, renameNode, suggestions, updateNode } from "./model.js";
import { SchemaForm, TemplateInput } from "./form.js";

// A text field that commits on blur or Enter (an id is renamed once, not per key).
function Committed({ value, onCommit, check, ...rest }) {
  const [text, setText] = useState(value);
  const [error, setError] = useState("");
  useEffect(() => setText(value), [value]);
  const commit = () => {
    if (text === value) return setError("");
    const why = check ? check(text) : "";
    if (why) return setError(why);
    setError("");
    onCommit(text);
  };
  return html`<span class="wf-committed">
    <input ...${rest} value=${text} onInput=${(e) => setText(e.target.value)} onBlur=${commit}
      onKeyDown=${(e) => e.key === "Enter" && (e.preventDefault(), commit())} />
    ${error ? html`<small class="wf-problem" role="alert">${error}</small>` : null}
  </span>`;
}

export function NodeInspector({ doc, node, types, problems, lists, readOnly, onChange, onSelect, onRemove }) {
  const type = types[node.type];
  const mine = problems || [];
  const configProblems = mine.filter((p) => p.field.startsWith("config.")).map((p) => ({ ...p, field: p.field.slice(7) }));
  const other = mine.filter((p) => !p.field.startsWith("config."));
  const set = (patch) => onChange(relabel(updateNode(doc, node.id, patch), node.id, types, branchesOf(node, types)));
  const rename = (to) => {
    onChange(renameNode(doc, node.id, to));
    onSelect(to);
  };
  const idCheck = (to) => (!ID.test(to) ? "an id is [a-z][a-z0-9_]* (at most 63 characters)"
    : doc.nodes.some((n) => n.id === to) ? `${to} is taken` : "");
  const retry = node.retry || {};
  return html`<fieldset class="wf-inspector" id="wf-inspector" data-node=${node.id} disabled=${readOnly}>
    <div class="row spread"><h3>${node.title || node.id} <span class="muted">${node.type}</span></h3>
      <button type="button" class="link bad" id="wf-node-delete" onClick=${onRemove}>Delete node</button></div>
    ${type ? html`<p class="muted">${type.description}</p>` : html`<p class="error">Unknown node type ${node.type}.</p>`}
    ${other.map((p) => html`<p class="wf-problem" role="alert">${p.field ? `${p.field}: ` : ""}${p.message}</p>`)}
    <div class="row">
      <label class="field"><span>ID</span><${Committed} id="wf-node-id" value=${node.id} onCommit=${rename} check=${idCheck} /></label>
      <label class="field"><span>Title</span><${Committed} id="wf-node-title" value=${node.title || ""} onCommit=${(t) => set({ title: t })} /></label>
    </div>
    ${type ? html`<${SchemaForm} schema=${type.configSchema} value=${node.config || {}} problems=${configProblems}
      onChange=${(config) => set({ config })} suggest=${suggestions(doc, node.id, types)} lists=${lists} />` : null}
    ${node.type === "start" ? html`<p class="muted">The start node's outputs are the workflow's inputs: select nothing to edit them.</p>` : null}
    <details class="wf-advanced" open=${Boolean(node.timeout_s || node.retry || node.on_error)}>
      <summary>Timeout, retries, failure</summary>
      <div class="row">
        <label class="field"><span>Timeout (s)</span><input id="wf-node-timeout" type="number" min="0" step="any" value=${node.timeout_s ?? ""}
          onInput=${(e) => set({ timeout_s: e.target.value === "" ? undefined : Number(e.target.value) })} /></label>
        <label class="field"><span>Attempts</span><input type="number" min="1" max="10" value=${retry.max_attempts ?? ""} placeholder="1"
          onInput=${(e) => set({ retry: e.target.value === "" ? undefined : { ...retry, max_attempts: Number(e.target.value) } })} /></label>
        <label class="field"><span>Backoff (s)</span><input type="number" min="0" step="any" value=${retry.backoff_s ?? ""} placeholder="0.5"
          disabled=${!node.retry} onInput=${(e) => set({ retry: { ...retry, backoff_s: e.target.value === "" ? 0.5 : Number(e.target.value) } })} /></label>
        <label class="field"><span>On failure</span><select id="wf-node-on-error" value=${node.on_error || "fail"} onChange=${(e) => set({ on_error: e.target.value })}>
          <option value="fail">fail the run</option><option value="branch">follow the error edges</option></select></label>
      </div>
    </details>
  </fieldset>`;
}

const INPUT_TYPES = ["string", "number", "integer", "boolean", "object", "array"];

// The workflow's inputs (name, type, required, default) and outputs (name -> template).
export function DocumentInspector({ doc, types, problems, readOnly, onChange }) {
  const inputs = Object.entries(doc.inputs || {}).map(([name, spec]) => [name, typeof spec === "string" ? { type: spec } : spec]);
  const outputs = Object.entries(doc.outputs || {});
  const writeInputs = (rows) => onChange({ ...doc, inputs: Object.fromEntries(rows) });
  const writeOutputs = (rows) => {
    const next = { ...doc, outputs: Object.fromEntries(rows) };
    if (!rows.length) delete next.outputs;
    onChange(next);
  };
  const setInput = (i, patch) => writeInputs(inputs.map(([n, s], j) => (j === i ? [n, clean({ ...s, ...patch })] : [n, s])));
  const unique = (rows, i) => (t) => (rows.some(([n], j) => j !== i && n === t) ? `${t} is taken` : "");
  const suggest = suggestionsOfAll(doc, types);
  return html`<fieldset class="wf-inspector" id="wf-doc-inspector" disabled=${readOnly}>
    <h3>Inputs</h3>
    <p class="muted">What a run is given; nodes read them as <code>{{ start.name }}</code>.</p>
    ${(problems || []).map((p) => html`<p class="wf-problem" role="alert">${p.field ? `${p.field}: ` : ""}${p.message}</p>`)}
    ${inputs.map(([name, spec], i) => html`<div class="wf-input-row" key=${i}>
      <${Committed} value=${name} placeholder="name" aria-label="input name"
        check=${(t) => (/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(t) ? unique(inputs, i)(t) : "a letter or _ then letters, digits or _")}
        onCommit=${(t) => writeInputs(inputs.map((r, j) => (j === i ? [t, r[1]] : r)))} />
      <select value=${spec.type || "string"} aria-label="type" onChange=${(e) => setInput(i, { type: e.target.value, default: undefined })}>
        ${INPUT_TYPES.map((t) => html`<option value=${t}>${t}</option>`)}</select>
      <label class="wf-check"><input type="checkbox" checked=${Boolean(spec.required)} onChange=${(e) => setInput(i, { required: e.target.checked })} /> required</label>
      <input placeholder="description" value=${spec.description || ""} onInput=${(e) => setInput(i, { description: e.target.value || undefined })} />
      <button type="button" class="link bad" onClick=${() => writeInputs(inputs.filter((_, j) => j !== i))}>Remove</button>
    </div>`)}
    <button type="button" class="link" id="wf-input-add" onClick=${() => writeInputs([...inputs, [freshName(inputs.map(([n]) => n), "input"), { type: "string", required: false }]])}>+ Add an input</button>
    <h3>Outputs</h3>
    <p class="muted">Optional: else the end nodes' outputs, else what the answer nodes said.</p>
    ${outputs.map(([name, text], i) => html`<div class="wf-kv" key=${i}>
      <${Committed} value=${name} placeholder="name" aria-label="output name" check=${unique(outputs, i)}
        onCommit=${(t) => writeOutputs(outputs.map((r, j) => (j === i ? [t, r[1]] : r)))} />
      <${TemplateInput} value=${text} rows=${1} suggest=${suggest} name=${`outputs.${name}`}
        onChange=${(t) => writeOutputs(outputs.map((r, j) => (j === i ? [r[0], t] : r)))} />
      <button type="button" class="link bad" onClick=${() => writeOutputs(outputs.filter((_, j) => j !== i))}>Remove</button>
    </div>`)}
    <button type="button" class="link" onClick=${() => writeOutputs([...outputs, [freshName(outputs.map(([n]) => n), "output"), ""]])}>+ Add an output</button>
  </fieldset>`;
}

function clean(spec) {
  const out = {};
  for (const [k, v] of Object.entries(spec)) if (v !== undefined) out[k] = v;
  return out;
}

// The workflow's outputs may read any node: what a node fed by all of them could.
function suggestionsOfAll(doc, types) {
  const edges = [...(doc.edges || []), ...(doc.nodes || []).map((n) => ({ from: n.id, to: "\u0000" }))];
  return suggestions({ ...doc, edges }, "\u0000", types);
}
