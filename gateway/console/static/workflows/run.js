// The run view: run the latest or the published version with inputs from a
// form built from the workflow's inputs; RunWorkflow's events light the nodes
// on the canvas as they arrive, streamed text shows as it comes, and a node
// clicked shows what it read, produced, took and why it failed. Past runs
// (ListWorkflowRuns) open the same way.

import { api, stream } from "../api.js";
import { html, useEffect, useRef, useState, useLoad, ErrorBox, Json, Table, fmtMs, fmtTime } from "../ui.js";

// A run as the view keeps it: nodes' records by id, streamed text by node.
export const emptyRun = () => ({ id: "", status: "running", version: 0, nodes: {}, started: {}, text: {}, outputs: null, usage: null, error: "", errorNode: "" });

// The canvas's status per node: { id: { state, note } }.
export function statusOf(run) {
  if (!run) return {};
  const out = {};
  for (const id of Object.keys(run.started)) out[id] = { state: "running", note: "running…" };
  for (const [id, n] of Object.entries(run.nodes)) {
    const tokens = n.usage && (Number(n.usage.inputTokens || 0) + Number(n.usage.outputTokens || 0));
    const bits = [n.status, n.latencyMs !== undefined ? fmtMs(Number(n.latencyMs)) : "", n.branch ? `→ ${n.branch}` : "", tokens ? `${tokens} tok` : ""];
    out[id] = { state: n.status, note: bits.filter(Boolean).join(" · ") };
  }
  return out;
}

// Applies one RunWorkflow event (proto3 JSON) to a run.
export function apply(run, ev) {
  const next = { ...run, id: ev.runId || run.id };
  if (ev.runStarted) next.version = ev.runStarted.version;
  if (ev.nodeStarted) next.started = { ...run.started, [ev.nodeStarted.node]: true };
  if (ev.nodeFinished) {
    const { [ev.nodeFinished.node]: _, ...started } = run.started;
    next.started = started;
    next.nodes = { ...run.nodes, [ev.nodeFinished.node]: ev.nodeFinished };
  }
  if (ev.textDelta) next.text = { ...run.text, [ev.textDelta.node]: (run.text[ev.textDelta.node] || "") + ev.textDelta.text };
  if (ev.runFinished) {
    const f = ev.runFinished;
    Object.assign(next, { status: f.status, outputs: f.outputs || {}, usage: f.usage || null, error: f.error || "", errorNode: f.errorNode || "" });
  }
  return next;
}

// A stored run (GetWorkflowRun) as the view keeps it.
export function fromRecord(record) {
  const nodes = Object.fromEntries((record.nodes || []).map((n) => [n.node, n]));
  const text = {};
  for (const n of record.nodes || []) if (n.type === "answer" && n.outputs && n.outputs.text) text[n.node] = n.outputs.text;
  const failed = (record.nodes || []).find((n) => n.status === "failed");
  return {
    id: record.name.split("/").pop(), status: record.status, version: record.version, nodes, started: {}, text,
    outputs: record.outputs || {}, usage: record.usage || null, error: record.error || "", errorNode: failed ? failed.node : "",
  };
}

function initial(inputs) {
  const out = {};
  for (const [name, spec] of Object.entries(inputs || {})) {
    const s = typeof spec === "string" ? { type: spec } : spec;
    const d = s.default;
    out[name] = ["object", "array"].includes(s.type) ? (d === undefined ? "" : JSON.stringify(d)) : d ?? (s.type === "boolean" ? false : "");
  }
  return out;
}

// The form's values as the run's inputs; throws naming the input that is wrong.
function collect(inputs, values) {
  const out = {};
  for (const [name, spec] of Object.entries(inputs || {})) {
    const s = typeof spec === "string" ? { type: spec } : spec;
    const v = values[name];
    if (v === "" || v === undefined) continue;
    if (s.type === "object" || s.type === "array") {
      try {
        out[name] = JSON.parse(v);
      } catch (e) {
        throw new Error(`input ${name}: not JSON (${e.message})`);
      }
    } else if (s.type === "number" || s.type === "integer") out[name] = Number(v);
    else out[name] = v;
  }
  return out;
}

function InputsForm({ inputs, values, onChange }) {
  const entries = Object.entries(inputs || {});
  if (!entries.length) return html`<p class="muted">This workflow takes no inputs.</p>`;
  return html`<div id="wf-run-inputs">${entries.map(([name, spec]) => {
    const s = typeof spec === "string" ? { type: spec } : spec;
    const set = (v) => onChange({ ...values, [name]: v });
    const label = html`<span>${name}${s.required ? html`<b class="req"> *</b>` : null} <small class="muted">${s.type}</small></span>`;
    if (s.type === "boolean") {
      return html`<label class="wf-check"><input type="checkbox" data-input=${name} checked=${values[name]} onChange=${(e) => set(e.target.checked)} /> ${name}</label>`;
    }
    const input = s.type === "number" || s.type === "integer"
      ? html`<input type="number" data-input=${name} step=${s.type === "integer" ? 1 : "any"} value=${values[name]} onInput=${(e) => set(e.target.value)} />`
      : html`<textarea data-input=${name} rows="2" placeholder=${s.type === "string" ? "" : "JSON"} value=${values[name]} onInput=${(e) => set(e.target.value)}></textarea>`;
    return html`<label class="field">${label}${input}${s.description ? html`<small class="muted">${s.description}</small>` : null}</label>`;
  })}</div>`;
}

// props: workflow, doc, dirty, run, setRun, selected (node id)
export function RunPanel({ workflow, doc, dirty, run, setRun, selected }) {
  const id = workflow.name.replace(/^workflows\//, "");
  const [values, setValues] = useState(() => initial(doc.inputs));
  const [which, setWhich] = useState("latest");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [tick, setTick] = useState(0);
  const abort = useRef(null);
  useEffect(() => () => abort.current && abort.current.abort(), []);
  const runs = useLoad(() => api("GET", `/v1/workflows/${encodeURIComponent(id)}/runs?page_size=20`), [id, tick]);

  const start = async () => {
    let inputs;
    try {
      inputs = collect(doc.inputs, values);
    } catch (e) {
      setError(e);
      return;
    }
    setError(null);
    setBusy(true);
    const controller = new AbortController();
    abort.current = controller;
    let current = emptyRun();
    setRun(current);
    const version = which === "latest" ? workflow.latestVersion : 0;
    try {
      await stream(`/v1/workflows/${encodeURIComponent(id)}:run`, { version, inputs }, (ev) => {
        current = apply(current, ev);
        setRun(current);
      }, controller.signal);
    } catch (e) {
      if (e.name === "AbortError") setRun({ ...current, status: "cancelled", started: {} });
      else {
        setError(e);
        setRun(current.id ? { ...current, status: "failed", error: current.error || e.message, started: {} } : null);
      }
    }
    abort.current = null;
    setBusy(false);
    setTick((t) => t + 1);
  };

  const open = async (record) => {
    setError(null);
    try {
      setRun(fromRecord(await api("GET", `/v1/${record.name}`)));
    } catch (e) {
      setError(e);
    }
  };

  const node = run && selected ? run.nodes[selected] : null;
  return html`<div id="wf-run" class="wf-run">
    <h3>Run</h3>
    <div class="row">
      <label class="field"><span>Version</span>
        <select id="wf-run-version" value=${which} onChange=${(e) => setWhich(e.target.value)}>
          <option value="latest">latest saved (v${workflow.latestVersion})</option>
          <option value="published" disabled=${!workflow.publishedVersion}>
            published${workflow.publishedVersion ? ` (v${workflow.publishedVersion})` : ": none yet"}</option>
        </select></label>
    </div>
    ${dirty ? html`<p class="muted">The editor has unsaved changes; a run uses what was saved.</p>` : null}
    <${InputsForm} inputs=${doc.inputs} values=${values} onChange=${setValues} />
    <div class="row">
      <button type="button" id="wf-run-start" disabled=${busy} onClick=${start}>Run</button>
      <button type="button" class="danger" id="wf-run-stop" disabled=${!busy} onClick=${() => abort.current && abort.current.abort()}>Stop</button>
    </div>
    <${ErrorBox} error=${error} />
    ${run ? html`<div class="card" id="wf-run-result" data-status=${run.status}>
      <div class="row spread"><strong>Run <span class="mono">${run.id || "…"}</span> · v${run.version || "?"}</strong>
        <span class=${`pill ${run.status === "succeeded" ? "good" : run.status === "running" ? "warn" : "bad"}`} id="wf-run-status">${run.status}</span></div>
      ${Object.entries(run.text).map(([n, t]) => html`<div class="turn assistant" data-node=${n}>
        <div class="turn-role">${n}</div><div class="turn-text wf-run-text">${t}</div></div>`)}
      ${run.error ? html`<p class="error">${run.errorNode ? `${run.errorNode}: ` : ""}${run.error}</p>` : null}
      ${run.outputs ? html`<h3>Outputs</h3><${Json} value=${run.outputs} />` : null}
      ${run.usage ? html`<p class="muted">${run.usage.inputTokens || 0} tokens in · ${run.usage.outputTokens || 0} out</p>` : null}
    </div>` : null}
    ${selected && run ? html`<div class="card" id="wf-run-node" data-node=${selected}>
      <h3>Node ${selected}</h3>
      ${node ? html`<dl class="facts">
          <dt>Status</dt><dd>${node.status}${node.branch ? ` → ${node.branch}` : ""}</dd>
          <dt>Latency</dt><dd>${fmtMs(Number(node.latencyMs || 0))}</dd>
          <dt>Tokens</dt><dd>${node.usage ? `${node.usage.inputTokens || 0} in · ${node.usage.outputTokens || 0} out` : "—"}</dd>
          <dt>Attempts</dt><dd>${node.attempts || 1}</dd>
        </dl>
        ${node.error ? html`<p class="error">${node.error}</p>` : null}
        <h3>Inputs</h3><${Json} value=${node.inputs || {}} />
        <h3>Outputs</h3><${Json} value=${node.outputs || {}} />`
        : html`<p class="muted">${run.started[selected] ? "Running…" : "This node has not run in this run."}</p>`}
    </div>` : null}
    <h3>Past runs</h3>
    <${ErrorBox} error=${runs.error} />
    <div id="wf-runs">
      <${Table} rows=${(runs.data && runs.data.runs) || []} empty="No runs yet." onRow=${open} columns=${[
        { label: "Run", value: (r) => html`<span class="mono">${r.name.split("/").pop()}</span>` },
        { label: "Version", value: (r) => `v${r.version}` },
        { label: "Status", value: (r) => r.status },
        { label: "Started", value: (r) => fmtTime(r.startTime) },
      ]} />
    </div>
  </div>`;
}
