// Apps: the tenant's apps (an app binds a model alias, a system-prompt template
// and retrieval over collections). Developers create, edit and delete them; the
// server checks the template on save (its error shows here). Anyone can chat
// with an app: citations first, then the answer streaming in, and the
// conversation goes on under the conversationId the first answer gave.
// The template preview is rendered here, approximately (the server uses
// sandboxed Jinja2 and has no render RPC): {{ query }}, {{ inputs.x }},
// {{ c.text }} etc. and one level of {% for c in chunks %}…{% endfor %}.

import { api, stream } from "../api.js";
import { html, useState, useEffect, useRef, useLoad, Table, Field, ErrorBox, Loading, fmtMs, fmtTime, fieldNumber } from "../ui.js";
import { allows } from "../app.js";

// The server's default template (gateway/apps/prompt.py), used when it is empty.
const DEFAULT_TEMPLATE =
  "Answer the question using only the context below. If the context does not hold the answer, say so.\n" +
  "{% for c in chunks %}[{{ loop.index }}] {{ c.text }}\n{% endfor %}";

const SAMPLE_CHUNKS = [
  { collection: "collections/sample", document_id: "handbook", chunk_id: "handbook#0", score: 0.82,
    text: "Refunds are issued within 14 days of a return." },
  { collection: "collections/sample", document_id: "faq", chunk_id: "faq#3", score: 0.67,
    text: "Support answers on weekdays, 9:00 to 17:00." },
];

const idOf = (app) => app.name.replace(/^apps\//, "");

// Approximate Jinja: {{ a.b }} lookups (filters ignored) and {% for x in chunks %} loops.
export function renderPreview(template, scope) {
  const lookup = (expr, vars) => {
    let v = vars;
    for (const key of expr.split("|")[0].trim().split(".")) {
      if (v === null || typeof v !== "object" || !Object.prototype.hasOwnProperty.call(v, key)) {
        return `{{ ${expr.trim()} }}`; // unknown: left as written
      }
      v = v[key];
    }
    return v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  };
  const fill = (text, vars) => text.replace(/\{\{-?([\s\S]*?)-?\}\}/g, (_, e) => lookup(e, vars));
  const loop = /\{%-?\s*for\s+(\w+)\s+in\s+chunks\s*-?%\}([\s\S]*?)\{%-?\s*endfor\s*-?%\}/g;
  const chunks = scope.chunks;
  const expanded = template.replace(loop, (_, name, body) =>
    chunks.map((c, i) => fill(body, { ...scope, [name]: c, loop: { index: i + 1, index0: i, first: i === 0, last: i === chunks.length - 1 } })).join(""),
  );
  return fill(expanded, scope);
}

// Parses the optional "inputs" JSON object; throws a readable Error.
function parseInputs(text) {
  if (!text.trim()) return {};
  const value = JSON.parse(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("inputs must be a JSON object");
  return value;
}

function formOf(app) {
  const r = (app && app.retrieval) || {};
  const p = (app && app.params) || {};
  return {
    id: app ? idOf(app) : "", displayName: (app && app.displayName) || "", model: (app && app.model) || "",
    promptTemplate: (app && app.promptTemplate) || "", collections: r.collections || [],
    k: r.k ?? "", scoreThreshold: r.scoreThreshold ?? "", temperature: p.temperature ?? "",
  };
}

function Editor({ app, models, collections, onSaved, onClose }) {
  const [f, setF] = useState(formOf(app));
  const [query, setQuery] = useState("How long do refunds take?");
  const [inputs, setInputs] = useState("");
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  const set = (key) => (e) => setF({ ...f, [key]: e.target.value });
  const editing = Boolean(app);
  const names = [...new Set([...collections.map((c) => c.name), ...f.collections])];

  let preview;
  try {
    preview = renderPreview(f.promptTemplate || DEFAULT_TEMPLATE, { query, inputs: parseInputs(inputs), chunks: SAMPLE_CHUNKS });
  } catch (err) {
    preview = `(inputs: ${err.message})`;
  }

  const save = async (e) => {
    e.preventDefault();
    setError(null);
    setSaved(false);
    const params = { ...((app && app.params) || {}) }; // keeps params this form does not show
    if (fieldNumber(f.temperature) === undefined) delete params.temperature;
    else params.temperature = fieldNumber(f.temperature);
    // Keeps the retrieval settings this form does not show (rerank, rerankTopN).
    const retrieval = { ...((app && app.retrieval) || {}), collections: f.collections };
    for (const name of ["k", "scoreThreshold"]) {
      if (fieldNumber(f[name]) === undefined) delete retrieval[name];
      else retrieval[name] = fieldNumber(f[name]);
    }
    const body = { displayName: f.displayName, model: f.model, promptTemplate: f.promptTemplate, retrieval, params };
    try {
      const done = editing
        ? await api("PATCH", `/v1/apps/${encodeURIComponent(f.id)}`, body)
        : await api("POST", `/v1/apps?app_id=${encodeURIComponent(f.id)}`, body);
      setSaved(true);
      onSaved(done);
    } catch (err) {
      setError(err);
    }
  };

  return html`<form class="card" id="app-editor" onSubmit=${save}>
    <h3>${editing ? `Edit ${f.id}` : "New app"}</h3>
    <div class="grid2">
      <div>
        <div class="row">
          <${Field} label="ID" hint="letters, digits, - and _">
            <input id="app-id" value=${f.id} onInput=${set("id")} disabled=${editing} required />
          <//>
          <${Field} label="Display name"><input id="app-display-name" value=${f.displayName} onInput=${set("displayName")} /><//>
          <${Field} label="Model alias">
            <select id="app-model" value=${f.model} onChange=${set("model")}>
              <option value="">(choose)</option>
              ${models.map((m) => html`<option value=${m}>${m}</option>`)}
            </select>
          <//>
        </div>
        <${Field} label="Prompt template (Jinja2; empty: the default)">
          <textarea id="app-prompt" rows="7" value=${f.promptTemplate} placeholder=${DEFAULT_TEMPLATE}
                    onInput=${set("promptTemplate")}></textarea>
        <//>
        <div class="row">
          <${Field} label="Collections" hint=${collections.length ? "Ctrl/Cmd-click for several" : "no collections"}>
            <select id="app-collections" multiple size="4"
                    onChange=${(e) => setF({ ...f, collections: Array.from(e.target.selectedOptions, (o) => o.value) })}>
              ${names.map((n) => html`<option value=${n} selected=${f.collections.includes(n)}>${n.replace(/^collections\//, "")}</option>`)}
            </select>
          <//>
          <${Field} label="k"><input id="app-k" type="number" min="0" size="4" value=${f.k} onInput=${set("k")} /><//>
          <${Field} label="Score threshold"><input id="app-score-threshold" type="number" step="0.01" size="6" value=${f.scoreThreshold} onInput=${set("scoreThreshold")} /><//>
          <${Field} label="Temperature"><input id="app-temperature" type="number" min="0" max="2" step="0.1" size="5" value=${f.temperature} onInput=${set("temperature")} /><//>
        </div>
        <div class="row">
          <button id="app-save" type="submit" disabled=${!f.id.trim()}>${editing ? "Save" : "Create"}</button>
          <button type="button" class="link" onClick=${onClose}>Close</button>
          ${saved ? html`<span class="ok" id="app-saved">Saved.</span>` : null}
        </div>
        <${ErrorBox} error=${error} />
      </div>
      <div>
        <h3>Approximate preview</h3>
        <p class="muted">Rendered here with two sample chunks, not by the server: only <code>{{ … }}</code> lookups${" "}
          and <code>{% for c in chunks %}</code> loops are filled in; the rest of Jinja2 shows as written.
          The server checks the real template when you save.</p>
        <div class="row">
          <${Field} label="Sample query"><input id="app-preview-query" value=${query} onInput=${(e) => setQuery(e.target.value)} /><//>
          <${Field} label="Sample inputs (JSON)"><input id="app-preview-inputs" value=${inputs} placeholder='{"x": 1}' onInput=${(e) => setInputs(e.target.value)} /><//>
        </div>
        <pre id="app-preview" class="json">${preview}</pre>
      </div>
    </div>
  </form>`;
}

function Chat({ app }) {
  const [turns, setTurns] = useState([]); // [{ role, content, note? }]
  const [citations, setCitations] = useState([]);
  const [conversation, setConversation] = useState("");
  const [input, setInput] = useState("");
  const [inputs, setInputs] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const abort = useRef(null);
  useEffect(() => () => abort.current && abort.current.abort(), []);
  const patchLast = (fn) => setTurns((ts) => [...ts.slice(0, -1), fn(ts[ts.length - 1])]);

  const send = async (e) => {
    if (e) e.preventDefault();
    const query = input;
    if (!query.trim() || busy) return;
    let vars;
    try {
      vars = parseInputs(inputs);
    } catch (err) {
      setError(err);
      return;
    }
    setError(null);
    setInput("");
    setCitations([]);
    setTurns((ts) => [...ts, { role: "user", content: query }, { role: "assistant", content: "" }]);
    setBusy(true);
    const controller = new AbortController();
    abort.current = controller;
    const t0 = performance.now();
    let text = "";
    let note = "";
    try {
      await stream(`/v1/apps/${encodeURIComponent(idOf(app))}:chat`, { query, conversationId: conversation, inputs: vars }, (ev) => {
        if (ev.conversationId) setConversation(ev.conversationId);
        if (ev.citation) setCitations((cs) => [...cs, ev.citation]);
        if (ev.delta) text += ev.delta;
        if (ev.done) {
          const u = ev.done.usage || {};
          note = `${u.inputTokens ?? "?"} tokens in · ${u.outputTokens ?? "?"} out · ${fmtMs(performance.now() - t0)} · finish: ${ev.done.finishReason || "?"}${ev.done.deployment ? ` · ${ev.done.deployment}` : ""}`;
        }
        patchLast((t) => ({ ...t, content: text, note }));
      }, controller.signal);
    } catch (err) {
      if (err.name === "AbortError") note = "stopped";
      else setError(err);
    }
    if (!text && note !== "stopped") {
      setTurns((ts) => ts.slice(0, -2));
      setInput(query);
    } else {
      patchLast((t) => ({ ...t, content: text, note }));
    }
    abort.current = null;
    setBusy(false);
  };

  return html`<div class="card" id="app-chat">
    <h3>Chat with ${app.displayName || idOf(app)} <span class="muted mono">${app.model}</span></h3>
    <div id="app-chat-transcript" class="transcript chatlog" aria-live="polite">
      ${turns.length === 0 ? html`<p class="muted">Ask the app something.</p>` : null}
      ${turns.map((t, i) => html`<div key=${i} class=${"turn " + t.role}>
        <div class="turn-role">${t.role}</div>
        <div class="turn-text">${t.content || (busy && i === turns.length - 1 ? "…" : "")}</div>
        ${t.note ? html`<div class="turn-stats muted">${t.note}</div>` : null}
      </div>`)}
    </div>
    <form class="chat-form" onSubmit=${send}>
      <textarea id="app-chat-input" rows="2" placeholder="Your question (Enter sends)" value=${input}
                onInput=${(e) => setInput(e.target.value)}
                onKeyDown=${(e) => e.key === "Enter" && !e.shiftKey && !e.isComposing && send(e)}></textarea>
      <div class="row">
        <button id="app-chat-send" type="submit" disabled=${busy || !input.trim()}>Send</button>
        <button id="app-chat-stop" type="button" class="danger" disabled=${!busy} onClick=${() => abort.current && abort.current.abort()}>Stop</button>
        <button id="app-chat-new" type="button" class="link" disabled=${busy}
                onClick=${() => { setTurns([]); setCitations([]); setConversation(""); }}>New conversation</button>
        <${Field} label="Template inputs (JSON, optional)">
          <input id="app-chat-inputs" value=${inputs} placeholder='{"x": 1}' onInput=${(e) => setInputs(e.target.value)} />
        <//>
      </div>
    </form>
    <p class="muted">Conversation: <span id="app-chat-conversation" class="mono">${conversation || "new"}</span></p>
    <${ErrorBox} error=${error} />
    <h3>Citations for the last answer</h3>
    <div id="app-citations">
      <${Table} rows=${citations} empty="No citations." columns=${[
        { label: "Collection", value: (c) => (c.collection || "").replace(/^collections\//, "") },
        { label: "Document", value: (c) => html`<span class="mono">${c.documentId}</span>` },
        { label: "Score", value: (c) => (c.score ?? 0).toFixed(3) },
        { label: "Text", value: (c) => html`<div class="citation-text">${c.text}</div>` },
      ]} />
    </div>
  </div>`;
}

async function listAll(path, field) {
  const all = [];
  let token = "";
  do {
    const r = await api("GET", `${path}?page_size=100${token ? `&page_token=${encodeURIComponent(token)}` : ""}`);
    all.push(...(r[field] || []));
    token = r.nextPageToken || "";
  } while (token);
  return all;
}

export default function Apps({ caller }) {
  const developer = allows(caller, "developer");
  const apps = useLoad(() => listAll("/v1/apps", "apps"));
  const [models, setModels] = useState([]);
  const [collections, setCollections] = useState([]);
  const [collectionsError, setCollectionsError] = useState(null);
  const [editing, setEditing] = useState(null); // null or { app: AppSpec or null (new), n: a key per opening }
  const edit = (app) => setEditing({ app, n: Date.now() });
  const [chatting, setChatting] = useState(null); // an AppSpec
  const [error, setError] = useState(null);

  useEffect(() => {
    if (!developer) return;
    api("GET", "/v1/router/models").then((r) => setModels((r.models || []).map((m) => m.alias || m.name)), setError);
    listAll("/v1/collections", "collections").then(setCollections, setCollectionsError);
  }, []);

  const remove = async (app) => {
    if (!confirm(`Delete the app ${idOf(app)}? Its conversations go with it.`)) return;
    setError(null);
    try {
      await api("DELETE", `/v1/apps/${encodeURIComponent(idOf(app))}`);
      if (chatting && chatting.name === app.name) setChatting(null);
      if (editing && editing.app && editing.app.name === app.name) setEditing(null);
      apps.reload();
    } catch (err) {
      setError(err);
    }
  };
  const stop = (fn) => (e) => {
    e.stopPropagation();
    fn();
  };

  const columns = [
    { label: "ID", value: (a) => html`<span class="mono">${idOf(a)}</span>` },
    { label: "Name", value: (a) => a.displayName || "—" },
    { label: "Model", value: (a) => a.model },
    { label: "Collections", value: (a) => ((a.retrieval && a.retrieval.collections) || []).map((c) => c.replace(/^collections\//, "")).join(", ") || "—" },
    { label: "Updated", value: (a) => fmtTime(a.updateTime) },
    { label: "", value: (a) => html`<span class="actions">
      <button class="link" data-app=${idOf(a)} data-action="chat" onClick=${stop(() => setChatting(a))}>Chat</button>
      ${developer ? html`<button class="link" data-app=${idOf(a)} data-action="edit" onClick=${stop(() => edit(a))}>Edit</button>
        <button class="link bad" data-app=${idOf(a)} data-action="delete" onClick=${stop(() => remove(a))}>Delete</button>` : null}
    </span>` },
  ];

  return html`<section>
    <h2>Apps</h2>
    <${ErrorBox} error=${apps.error || error} />
    ${developer ? html`<p><button id="app-new" type="button" onClick=${() => edit(null)}>New app</button></p>` : null}
    <div id="apps-table">
      ${apps.loading && !apps.data ? html`<${Loading} />` : html`<${Table} rows=${apps.data || []} columns=${columns}
        empty=${developer ? "No apps yet: create one." : "No apps yet; a developer key creates them."} onRow=${setChatting} />`}
    </div>
    ${developer && editing ? html`<div>
      ${collectionsError ? html`<p class="muted">Collections are unavailable: ${collectionsError.message}</p>` : null}
      <${Editor} key=${editing.n} app=${editing.app}
        models=${models} collections=${collections} onClose=${() => setEditing(null)}
        onSaved=${(saved) => { setEditing({ ...editing, app: saved }); if (chatting && chatting.name === saved.name) setChatting(saved); apps.reload(); }} />
    </div>` : null}
    ${chatting ? html`<${Chat} key=${chatting.name} app=${chatting} />` : null}
  </section>`;
}
