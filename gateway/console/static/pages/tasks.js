// Tasks: the caller's asynchronous jobs (GET /v1/tasks), filtered by state and
// paged, refreshed every few seconds. A row opens its details (GET /v1/tasks/{id}:
// payload, result or error, transitions), with Cancel while it is pending or
// retrying. Developers also see the dead letters (GET /v1/tasks:deadLetters)
// and can requeue them. A small form submits a task (POST /v1/tasks).

import { api } from "../api.js";
import { html, useState, useEffect, useRef, useLoad, useInterval, usePages, Pager, Table, Field, ErrorBox, Json, fmtTime } from "../ui.js";
import { allows } from "../app.js";

const POLL_MS = 3000;
const PAGE_SIZE = 20;
const STATES = ["PENDING", "PROCESSING", "RETRYING", "SUCCESS", "FAILURE", "DEAD_LETTERED", "CANCELLED"];
const CANCELLABLE = ["PENDING", "RETRYING"];
const PILL = { SUCCESS: "good", FAILURE: "bad", DEAD_LETTERED: "bad", RETRYING: "warn", PROCESSING: "warn" };
// The API cannot list task types: these are the built-in ones, as examples.
const EXAMPLES = {
  "generate.batch": { model: "chat", prompts: ["Hello!", "Goodbye!"], max_tokens: 16 },
  "embed.batch": { model: "embed", inputs: ["first text", "second text"] },
  noop: {},
};

// Repaints every POLL_MS while the tab is visible (a hidden tab polls nothing).
function usePoll(reload) {
  useInterval(() => document.hidden || reload(), POLL_MS);
}

export const State = ({ state }) => html`<span class=${"pill " + (PILL[state] || "")}>${state}</span>`;

function Detail({ id, onClose, onChanged }) {
  const box = useRef(null);
  useEffect(() => box.current.scrollIntoView({ block: "nearest" }), [id]);
  const task = useLoad(() => api("GET", `/v1/tasks/${encodeURIComponent(id)}`), [id]);
  const [error, setError] = useState(null);
  usePoll(task.reload); // a requeue or a worker may change it at any time
  const cancel = async () => {
    setError(null);
    try {
      await api("POST", `/v1/tasks/${encodeURIComponent(id)}:cancel`, {});
      task.reload();
      onChanged();
    } catch (err) {
      setError(err);
    }
  };
  const t = task.data;
  return html`<div id="task-detail" class="card" ref=${box}>
    <div class="row spread">
      <h3>Task <span class="mono">${id}</span></h3>
      <button class="link" onClick=${onClose}>Close</button>
    </div>
    <${ErrorBox} error=${task.error || error} />
    ${t ? html`
      <p><${State} state=${t.state} /> ${t.type} · attempt${t.attempts === 1 ? "" : "s"}: ${t.attempts || 0}
        ${CANCELLABLE.includes(t.state) ? html` <button class="danger" id="task-cancel" onClick=${cancel}>Cancel task</button>` : null}</p>
      <dl class="facts">
        <dt>Created</dt><dd>${fmtTime(t.createTime)}</dd>
        <dt>Updated</dt><dd>${fmtTime(t.updateTime)}</dd>
        ${t.nextAttemptTime ? html`<dt>Next attempt</dt><dd>${fmtTime(t.nextAttemptTime)}</dd>` : null}
        ${t.idempotencyKey ? html`<dt>Idempotency key</dt><dd class="mono">${t.idempotencyKey}</dd>` : null}
        ${t.resultUri ? html`<dt>Archived at</dt><dd class="mono">${t.resultUri}</dd>` : null}
      </dl>
      ${t.error ? html`<h3>Error</h3><pre class="json bad">${t.error}</pre>` : null}
      ${t.result ? html`<h3>Result</h3><${Json} value=${t.result} />` : null}
      <h3>Payload</h3><${Json} value=${t.payload || {}} />
      <h3>Transitions</h3>
      <${Table} rows=${t.transitions || []} columns=${[
        { label: "State", value: (x) => html`<${State} state=${x.state} />` },
        { label: "Time", value: (x) => fmtTime(x.time) },
        { label: "Reason", value: (x) => x.reason || "" },
      ]} />` : null}
  </div>`;
}

function DeadLetters({ onOpen, onChanged }) {
  const pages = usePages();
  const list = useLoad(() => api("GET", `/v1/tasks:deadLetters?page_size=${PAGE_SIZE}&page_token=${encodeURIComponent(pages.token)}`), [pages.token]);
  const [error, setError] = useState(null);
  usePoll(list.reload);
  const requeue = async (e, t) => {
    e.stopPropagation(); // the row's click opens the details
    setError(null);
    try {
      await api("POST", `/v1/tasks/${encodeURIComponent(t.id)}:requeue`, {});
      list.reload();
      onChanged();
    } catch (err) {
      setError(err);
    }
  };
  const rows = (list.data && list.data.tasks) || [];
  return html`<div class="card">
    <h3>Dead letters</h3>
    <p class="muted">Tasks that ran out of attempts. Requeue puts one back to PENDING with its attempts reset.</p>
    <${ErrorBox} error=${list.error || error} />
    <div id="dead-letters-table">
      <${Table} rows=${rows} empty="No dead letters." onRow=${(t) => onOpen(t.id)} columns=${[
        { label: "Id", value: (t) => html`<span class="mono">${t.id}</span>` },
        { label: "Type", value: (t) => t.type },
        { label: "Attempts", value: (t) => t.attempts || 0 },
        { label: "Last error", value: (t) => t.error || "" },
        { label: "Updated", value: (t) => fmtTime(t.updateTime) },
        { label: "", value: (t) => html`<button class="secondary" onClick=${(e) => requeue(e, t)}>Requeue</button>` },
      ]} />
    </div>
    ${pages.page > 1 || (list.data && list.data.nextPageToken) ? html`<${Pager} pages=${pages} next=${list.data && list.data.nextPageToken} />` : null}
  </div>`;
}

function Submit({ onDone }) {
  const [type, setType] = useState("noop");
  const [payload, setPayload] = useState("{}");
  const [error, setError] = useState(null);
  const pick = (t) => {
    setType(t);
    if (EXAMPLES[t]) setPayload(JSON.stringify(EXAMPLES[t], null, 2));
  };
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    let body;
    try {
      body = JSON.parse(payload || "{}");
    } catch (err) {
      setError(new Error(`The payload is not JSON: ${err.message}`));
      return;
    }
    try {
      const task = await api("POST", "/v1/tasks", { type, payload: body });
      onDone(task.id);
    } catch (err) {
      setError(err);
    }
  };
  return html`<details class="card">
    <summary>Submit a task</summary>
    <form onSubmit=${submit}>
      <${Field} label="Type" hint="Built in: generate.batch, embed.batch, noop; features add their own.">
        <input id="task-type" list="task-types" value=${type} onInput=${(e) => pick(e.target.value)} />
        <datalist id="task-types">${Object.keys(EXAMPLES).map((t) => html`<option value=${t} />`)}</datalist>
      <//>
      <${Field} label="Payload (JSON)"><textarea id="task-payload" value=${payload} onInput=${(e) => setPayload(e.target.value)} /><//>
      <button type="submit" id="task-submit">Submit</button>
    </form>
    <${ErrorBox} error=${error} />
  </details>`;
}

export default function Tasks({ caller }) {
  const [state, setState] = useState("");
  const [open, setOpen] = useState(null);
  const pages = usePages();
  const list = useLoad(() => {
    const q = new URLSearchParams({ page_size: PAGE_SIZE, page_token: pages.token });
    if (state) q.set("state", state);
    return api("GET", `/v1/tasks?${q}`);
  }, [state, pages.token]);
  usePoll(list.reload);
  const rows = (list.data && list.data.tasks) || [];
  const developer = allows(caller, "developer");
  return html`<section>
    <h2>Tasks</h2>
    <p class="muted">Your tenant's tasks, oldest first, refreshed every ${POLL_MS / 1000} s. Click one for its details.</p>
    <div class="row">
      <${Field} label="State">
        <select id="task-state-filter" value=${state} onChange=${(e) => { setState(e.target.value); pages.reset(); }}>
          <option value="">All states</option>
          ${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
      <//>
    </div>
    <${ErrorBox} error=${list.error} />
    <div id="tasks-table">
      <${Table} rows=${rows} empty=${list.loading && !list.data ? "Loading…" : "No tasks."} onRow=${(t) => setOpen(t.id)} columns=${[
        { label: "Id", value: (t) => html`<span class="mono">${t.id}</span>` },
        { label: "Type", value: (t) => t.type },
        { label: "State", value: (t) => html`<${State} state=${t.state} />` },
        { label: "Attempts", value: (t) => t.attempts || 0 },
        { label: "Created", value: (t) => fmtTime(t.createTime) },
        { label: "Updated", value: (t) => fmtTime(t.updateTime) },
      ]} />
    </div>
    <${Pager} pages=${pages} next=${list.data && list.data.nextPageToken} />
    ${open ? html`<${Detail} key=${open} id=${open} onClose=${() => setOpen(null)} onChanged=${list.reload} />` : null}
    <${Submit} onDone=${(id) => { list.reload(); setOpen(id); }} />
    ${developer ? html`<${DeadLetters} onOpen=${setOpen} onChanged=${list.reload} />` : null}
  </section>`;
}
