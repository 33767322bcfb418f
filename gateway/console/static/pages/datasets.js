// Datasets: the tenant's collections with their document and chunk counts.
// Developers create and delete collections, upload files (drag and drop or the
// file picker; one progress bar per file, then its chunks, "unchanged" or the
// error) and delete documents. Anyone can list a collection's documents
// (ListDocuments), read a document's chunks (ListChunks) and search it
// (mode, k, metadata filters), the query's words highlighted in the results.
// Document text is only ever rendered as text: highlights are <mark> elements
// around string pieces, never HTML.

import { api, upload } from "../api.js";
import { html, useState, useEffect, useRef, Field, ErrorBox, Json, Loading, fmtTime } from "../ui.js";
import { allows } from "../app.js";

const PAGE_SIZE = 50;
const PARALLEL_UPLOADS = 2;
const MODES = [
  { value: "auto", label: "auto (hybrid for text)", wire: undefined },
  { value: "dense", label: "dense (meaning)", wire: "SEARCH_MODE_DENSE" },
  { value: "lexical", label: "lexical (BM25 keywords)", wire: "SEARCH_MODE_LEXICAL" },
  { value: "hybrid", label: "hybrid (both, fused)", wire: "SEARCH_MODE_HYBRID" },
];
const OPS = [
  { value: "eq", label: "=" },
  { value: "in", label: "one of" },
  { value: "gte", label: "≥" },
  { value: "lte", label: "≤" },
];

const idOf = (collection) => collection.name.replace(/^collections\//, "");
const base = (id) => `/v1/collections/${encodeURIComponent(id)}`;
const count = (n) => Number(n || 0); // int64 fields arrive as strings, zero as absent
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// The selected collection lives in the hash (#/datasets?collection=id), so a
// reload keeps it; replaceState, so no history entry and no hashchange.
function hashCollection() {
  const query = location.hash.split("?")[1] || "";
  return new URLSearchParams(query).get("collection") || "";
}
function setHashCollection(id) {
  const hash = id ? `#/datasets?collection=${encodeURIComponent(id)}` : "#/datasets";
  history.replaceState(null, "", hash);
}

// --- highlighting ------------------------------------------------------------------------

const WORD = /[\p{L}\p{N}]+/gu;

// The query's words (lower-cased, longest first, so that "rain" loses to "rainfall").
export function queryWords(text) {
  const words = new Set((text.toLowerCase().match(WORD) || []).filter((w) => w.length > 1 || /\p{N}/u.test(w)));
  return [...words].sort((a, b) => b.length - a.length);
}

// `text` split into pieces: [{ text, hit }], hits being the query's words as whole
// words (a plural or -ed/-ing form too), case-insensitively.
export function highlight(text, words) {
  if (!words.length) return [{ text, hit: false }];
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])((?:${escaped.join("|")})(?:s|es|ed|ing)?)(?![\\p{L}\\p{N}])`, "giu");
  return text.split(pattern).map((piece, i) => ({ text: piece, hit: i % 2 === 1 })).filter((p) => p.text);
}

function Highlighted({ text, words }) {
  return highlight(text, words).map((p) => (p.hit ? html`<mark>${p.text}</mark>` : p.text));
}

// --- small pieces --------------------------------------------------------------------------

// A table with an id (for tests and links), clickable rows and a selected row.
function IdTable({ id, rows, columns, onRow, selected, empty, scroll = false }) {
  return html`<div class=${"ds-table-wrap" + (scroll ? " ds-scroll" : "")}>
    <table id=${id}>
      <thead><tr>${columns.map((c) => html`<th>${c.label}</th>`)}</tr></thead>
      <tbody>
        ${rows.map(
          (row) => html`<tr key=${row.key} data-key=${row.key}
              class=${[onRow ? "clickable" : "", selected === row.key ? "selected" : ""].join(" ").trim()}
              onClick=${onRow ? () => onRow(row) : undefined}>
            ${columns.map((c) => html`<td>${c.value(row)}</td>`)}
          </tr>`,
        )}
      </tbody>
    </table>
    ${rows.length === 0 ? html`<p class="muted">${empty}</p>` : null}
  </div>`;
}

// Delete in two clicks, inline (no window.confirm).
function ConfirmDelete({ what, onConfirm, label = "Delete" }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const stop = (e) => e.stopPropagation();
  if (!asking) {
    return html`<button type="button" class="secondary ds-small" onClick=${(e) => { stop(e); setAsking(true); }}>${label}</button>`;
  }
  const yes = async (e) => {
    stop(e);
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      setBusy(false);
      setAsking(false);
    }
  };
  return html`<span class="ds-confirm" onClick=${stop}>Delete ${what}?
    <button type="button" class="danger ds-small ds-confirm-yes" disabled=${busy} onClick=${yes}>Delete</button>
    <button type="button" class="link ds-small" onClick=${(e) => { stop(e); setAsking(false); }}>Cancel</button>
  </span>`;
}

// --- collections -----------------------------------------------------------------------------

function NewCollection({ onCreated }) {
  const [id, setId] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [chunkTokens, setChunkTokens] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const wanted = id.trim();
    if (!wanted) {
      setError(new Error("A collection needs an id: lower-case letters, digits, - and _."));
      return;
    }
    const collection = { displayName: displayName.trim() || undefined };
    if (chunkTokens.trim()) collection.chunkTokens = Number(chunkTokens);
    setBusy(true);
    try {
      const made = await api("POST", `/v1/collections?collection_id=${encodeURIComponent(wanted)}`, collection);
      setId("");
      setDisplayName("");
      setChunkTokens("");
      onCreated(made);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="row" onSubmit=${submit}>
    <${Field} label="New collection id">
      <input id="collection-new-id" value=${id} onInput=${(e) => setId(e.target.value)}
             placeholder="handbook" autocomplete="off" />
    <//>
    <${Field} label="Display name (optional)">
      <input id="collection-new-name" value=${displayName} onInput=${(e) => setDisplayName(e.target.value)} />
    <//>
    <${Field} label="Chunk tokens (optional)">
      <input id="collection-new-tokens" type="number" min="16" value=${chunkTokens}
             onInput=${(e) => setChunkTokens(e.target.value)} placeholder="default" class="ds-narrow" />
    <//>
    <button id="collection-create" type="submit" disabled=${busy}>Create collection</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

function Collections({ caller, collections, error, selected, onSelect, onChanged, onCreated }) {
  const developer = allows(caller, "developer");
  const [deleteError, setDeleteError] = useState(null);
  const remove = async (id) => {
    setDeleteError(null);
    try {
      await api("DELETE", base(id));
      if (selected === id) onSelect("");
      onChanged();
    } catch (err) {
      setDeleteError(err);
    }
  };
  const columns = [
    { label: "Collection", value: (c) => html`<span class="mono">${c.key}</span>` },
    { label: "Name", value: (c) => c.displayName || "" },
    { label: "Documents", value: (c) => count(c.documentCount) },
    { label: "Chunks", value: (c) => count(c.chunkCount) },
    { label: "Chunk tokens", value: (c) => `${c.chunkTokens || "—"} (overlap ${c.chunkOverlap || 0})` },
    { label: "Embedding", value: (c) => `${c.embeddingModel || "—"} · ${c.dimensions || 0} d` },
    { label: "Created", value: (c) => fmtTime(c.createTime) },
  ];
  if (developer) {
    columns.push({
      label: "",
      value: (c) => html`<${ConfirmDelete} what=${`collection ${c.key} and all its documents`} onConfirm=${() => remove(c.key)} />`,
    });
  }
  return html`<div class="card">
    <h3>Collections</h3>
    <${ErrorBox} error=${error || deleteError} />
    ${collections === null
      ? html`<${Loading} />`
      : html`<${IdTable} id="collections-table" rows=${collections.map((c) => ({ ...c, key: idOf(c) }))}
          columns=${columns} selected=${selected} onRow=${(c) => onSelect(c.key)}
          empty=${developer ? "No collections yet: create one below." : "No collections yet (a developer key creates them)."} />`}
    ${developer ? html`<${NewCollection} onCreated=${onCreated} />` : null}
  </div>`;
}

// --- uploads ---------------------------------------------------------------------------------

let nextUpload = 1;

function UploadRow({ item, collection }) {
  const { file, state, progress, result, error } = item;
  let status;
  if (state === "waiting") status = html`<span class="muted">waiting</span>`;
  else if (state === "uploading") status = html`<span class="muted">uploading ${Math.round(progress * 100)} %</span>`;
  else if (state === "indexing") status = html`<span class="muted">parsing and embedding…</span>`;
  else if (state === "error") status = html`<span class="bad">${error.message || String(error)}</span>`;
  else if (result.unchanged) {
    status = html`<span class="ok">unchanged (${plural(result.chunks || 0, "chunk")} already stored)</span>`;
  } else {
    const pages = result.pages ? ` · ${plural(result.pages, "page")}` : "";
    status = html`<span class="ok">${plural(result.chunks || 0, "chunk")}${pages}</span>`;
  }
  return html`<li class=${"ds-upload " + state} data-file=${file.name}>
    <span class="ds-upload-name" title=${file.name}>${file.name}${item.collection !== collection
      ? html` <span class="muted">→ ${item.collection}</span>` : null}</span>
    <span class="muted ds-upload-size">${fmtBytes(file.size)}</span>
    <progress max="1" value=${state === "done" || state === "indexing" ? 1 : state === "error" ? 0 : progress}></progress>
    <span class="ds-upload-status">${status}</span>
  </li>`;
}

function Uploader({ collection, onUploaded }) {
  const [items, setItems] = useState([]);
  const [over, setOver] = useState(false);
  const queue = useRef([]);
  const running = useRef(0);
  const input = useRef(null);
  const live = useRef(true);

  useEffect(() => {
    // A file dropped beside the zone would otherwise open in the tab, leaving the console.
    const guard = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files") && e.preventDefault();
    addEventListener("dragover", guard);
    addEventListener("drop", guard);
    return () => {
      live.current = false;
      removeEventListener("dragover", guard);
      removeEventListener("drop", guard);
    };
  }, []);

  const patch = (id, change) => live.current && setItems((all) => all.map((it) => (it.id === id ? { ...it, ...change } : it)));

  const pump = () => {
    while (running.current < PARALLEL_UPLOADS && queue.current.length) {
      const item = queue.current.shift();
      running.current += 1;
      patch(item.id, { state: "uploading" });
      // A .json file would read as NDJSON request messages: send every file as raw bytes.
      const body = /json/i.test(item.file.type) ? new Blob([item.file], { type: "application/octet-stream" }) : item.file;
      const path = `${base(item.collection)}/files?header.filename=${encodeURIComponent(item.file.name)}`;
      upload(path, body, (fraction) => patch(item.id, fraction >= 1 ? { progress: 1, state: "indexing" } : { progress: fraction }))
        .then(
          (result) => {
            patch(item.id, { state: "done", progress: 1, result });
            onUploaded();
          },
          (error) => patch(item.id, { state: "error", error }),
        )
        .finally(() => {
          running.current -= 1;
          pump();
        });
    }
  };

  const add = (fileList) => {
    const files = [...(fileList || [])];
    if (!files.length) return;
    const fresh = files.map((file) => ({ id: nextUpload++, file, collection, state: "waiting", progress: 0 }));
    setItems((all) => [...fresh, ...all]);
    queue.current.push(...fresh);
    pump();
  };

  const drop = (e) => {
    e.preventDefault();
    setOver(false);
    add(e.dataTransfer.files);
  };
  const finished = items.filter((it) => it.state === "done" || it.state === "error").length;
  return html`<div class="card">
    <h3>Upload files</h3>
    <div id="dropzone" class=${"dropzone" + (over ? " over" : "")}
         onDragEnter=${(e) => { e.preventDefault(); setOver(true); }}
         onDragOver=${(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; }}
         onDragLeave=${(e) => { if (!e.currentTarget.contains(e.relatedTarget)) setOver(false); }}
         onDrop=${drop}>
      <p>Drop files here, or <button type="button" class="secondary" onClick=${() => input.current.click()}>choose files</button></p>
      <p class="muted">PDF, Markdown, HTML, CSV/TSV and plain text. Each file becomes a document named after it;
        uploading a file of the same name again replaces that document (or is "unchanged").</p>
      <input id="file-input" type="file" multiple class="ds-hidden" ref=${input}
             accept=".pdf,.md,.markdown,.html,.htm,.csv,.tsv,.txt,.text,.log,text/*,application/pdf"
             onChange=${(e) => { add(e.target.files); e.target.value = ""; }} />
    </div>
    <div class="row spread ds-upload-head">
      <span class="muted">${items.length ? `${finished} of ${plural(items.length, "file")} finished` : ""}</span>
      ${finished ? html`<button type="button" class="link" onClick=${() => setItems((all) => all.filter((it) => it.state !== "done" && it.state !== "error"))}>Clear finished</button>` : null}
    </div>
    <ul id="upload-list" class="ds-uploads">
      ${items.map((item) => html`<${UploadRow} key=${item.id} item=${item} collection=${collection} />`)}
    </ul>
  </div>`;
}

// --- documents and chunks ----------------------------------------------------------------------

function Chunks({ collection, documentId, onClose }) {
  const [chunks, setChunks] = useState(null);
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const latest = useRef(0);
  const load = async (pageToken) => {
    const call = ++latest.current;
    setError(null);
    const query = new URLSearchParams({ document_id: documentId, page_size: String(PAGE_SIZE) });
    if (pageToken) query.set("page_token", pageToken);
    try {
      const reply = await api("GET", `${base(collection)}/chunks?${query}`);
      if (call !== latest.current) return;
      setChunks((old) => [...(pageToken ? old || [] : []), ...(reply.chunks || [])]);
      setToken(reply.nextPageToken || "");
    } catch (err) {
      if (call === latest.current) setError(err);
    }
  };
  useEffect(() => {
    setChunks(null);
    load("");
  }, [collection, documentId]);
  return html`<div class="card" id="document-chunks">
    <div class="row spread">
      <h3>Chunks of <span class="mono">${documentId}</span></h3>
      <button type="button" class="link" onClick=${onClose}>Close</button>
    </div>
    <${ErrorBox} error=${error} />
    ${chunks === null && !error ? html`<${Loading} />` : null}
    ${chunks && chunks.length === 0 ? html`<p class="muted">This document has no chunks.</p>` : null}
    <ol class="ds-chunks">
      ${(chunks || []).map(
        (c) => html`<li key=${c.id} class="ds-chunk">
          <div class="muted ds-chunk-head">#${c.position || 0}${c.page ? ` · page ${c.page}` : ""}${c.heading ? ` · ${c.heading}` : ""}</div>
          <div class="ds-text">${c.text || ""}</div>
          ${c.metadata && Object.keys(c.metadata).length ? html`<details><summary class="muted">metadata</summary><${Json} value=${c.metadata} /></details>` : null}
        </li>`,
      )}
    </ol>
    ${token ? html`<button type="button" class="secondary" onClick=${() => load(token)}>More chunks</button>` : null}
  </div>`;
}

function Documents({ caller, collection, version, onChanged, opened, onOpen }) {
  const developer = allows(caller, "developer");
  const [documents, setDocuments] = useState(null);
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const latest = useRef(0); // only the newest listing's answer is shown
  const load = async (pageToken, keep) => {
    const call = ++latest.current;
    setError(null);
    const query = new URLSearchParams({ page_size: String(PAGE_SIZE) });
    if (pageToken) query.set("page_token", pageToken);
    try {
      const reply = await api("GET", `${base(collection)}/documents?${query}`);
      if (call !== latest.current) return;
      setDocuments((old) => [...(keep ? old || [] : []), ...(reply.documents || [])]);
      setToken(reply.nextPageToken || "");
    } catch (err) {
      if (call === latest.current) setError(err);
    }
  };
  useEffect(() => setDocuments(null), [collection]);
  useEffect(() => {
    load("", false);
  }, [collection, version]);

  const remove = async (id) => {
    setError(null);
    try {
      await api("POST", `${base(collection)}/documents:delete`, { documentIds: [id] });
      if (opened === id) onOpen("");
      onChanged();
    } catch (err) {
      setError(err);
    }
  };
  const columns = [
    { label: "Document", value: (d) => html`<span class="mono">${d.id}</span>` },
    { label: "Source", value: (d) => (d.source && d.source !== d.id ? d.source : html`<span class="muted">—</span>`) },
    { label: "Chunks", value: (d) => d.chunks || 0 },
    { label: "Pages", value: (d) => d.pages || "—" },
    { label: "Metadata", value: (d) => (d.metadata && Object.keys(d.metadata).length ? html`<code class="ds-meta">${JSON.stringify(d.metadata)}</code>` : "—") },
    { label: "Updated", value: (d) => fmtTime(d.updateTime) },
  ];
  if (developer) {
    columns.push({ label: "", value: (d) => html`<${ConfirmDelete} what=${`document ${d.id}`} onConfirm=${() => remove(d.id)} />` });
  }
  return html`<div class="card">
    <div class="row spread">
      <h3>Documents</h3>
      <button type="button" class="link" onClick=${() => load("", false)}>Refresh</button>
    </div>
    <p class="muted">Click a document to read its chunks.</p>
    <${ErrorBox} error=${error} />
    ${documents === null && !error
      ? html`<${Loading} />`
      : html`<${IdTable} id="documents-table" rows=${(documents || []).map((d) => ({ ...d, key: d.id }))}
          columns=${columns} selected=${opened} onRow=${(d) => onOpen(opened === d.id ? "" : d.id)} scroll=${true}
          empty=${developer ? "No documents yet: upload files above." : "No documents yet."} />`}
    ${token ? html`<button type="button" class="secondary" id="documents-more" onClick=${() => load(token, true)}>More documents</button>` : null}
  </div>`;
}

// --- search ---------------------------------------------------------------------------------

// A filter row's value as the API wants it: JSON when it parses (2024, true, "x"),
// else the text itself.
function parseValue(text) {
  const t = text.trim();
  try {
    return JSON.parse(t);
  } catch {
    return t;
  }
}

export function conditionOf(row) {
  const field = row.field.trim();
  if (!field) return null;
  if (row.op === "in") return { field, in: row.value.split(",").map(parseValue) };
  if (row.op === "gte" || row.op === "lte") {
    const n = Number(row.value);
    if (row.value.trim() === "" || !Number.isFinite(n)) throw new Error(`filter ${field}: ${OPS.find((o) => o.value === row.op).label} needs a number`);
    return { field, range: { [row.op]: n } };
  }
  return { field, eq: parseValue(row.value) };
}

let nextFilter = 1;

function Search({ collection, onOpen }) {
  const [text, setText] = useState("");
  const [mode, setMode] = useState("auto");
  const [k, setK] = useState("10");
  const [minScore, setMinScore] = useState("");
  const [filters, setFilters] = useState([]);
  const [results, setResults] = useState(null);
  const [words, setWords] = useState([]);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => setResults(null), [collection]);

  const setFilter = (id, change) => setFilters((all) => all.map((f) => (f.id === id ? { ...f, ...change } : f)));
  const run = async (e) => {
    e.preventDefault();
    setError(null);
    let body;
    try {
      if (!text.trim()) throw new Error("Type something to search for.");
      const conditions = filters.map(conditionOf).filter(Boolean);
      body = { text, k: Number(k) || 10 };
      const wire = MODES.find((m) => m.value === mode).wire;
      if (wire) body.mode = wire;
      if (conditions.length) body.filter = { conditions };
      if (minScore.trim()) body.minScore = Number(minScore);
    } catch (err) {
      setError(err);
      return;
    }
    setBusy(true);
    try {
      const reply = await api("POST", `${base(collection)}:search`, body);
      setWords(queryWords(text));
      setResults(reply.results || []);
    } catch (err) {
      setResults(null);
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="card">
    <h3>Search</h3>
    <form onSubmit=${run}>
      <div class="row">
        <${Field} label="Query">
          <input id="search-text" value=${text} onInput=${(e) => setText(e.target.value)} size="40" placeholder="what are you looking for?" />
        <//>
        <${Field} label="Mode">
          <select id="search-mode" value=${mode} onChange=${(e) => setMode(e.target.value)}>
            ${MODES.map((m) => html`<option value=${m.value}>${m.label}</option>`)}
          </select>
        <//>
        <${Field} label="k">
          <input id="search-k" type="number" min="1" max="1000" value=${k} onInput=${(e) => setK(e.target.value)} class="ds-narrow" />
        <//>
        <${Field} label="Min score">
          <input id="search-min-score" type="number" step="any" value=${minScore} onInput=${(e) => setMinScore(e.target.value)} placeholder="none" class="ds-narrow" />
        <//>
        <button id="search-run" type="submit" disabled=${busy}>${busy ? "Searching…" : "Search"}</button>
      </div>
      <div id="search-filters">
        ${filters.map(
          (f) => html`<div class="row ds-filter" key=${f.id}>
            <input class="ds-filter-field" value=${f.field} placeholder="metadata field (e.g. team, page, source)"
                   onInput=${(e) => setFilter(f.id, { field: e.target.value })} />
            <select class="ds-filter-op" value=${f.op} onChange=${(e) => setFilter(f.id, { op: e.target.value })}>
              ${OPS.map((o) => html`<option value=${o.value}>${o.label}</option>`)}
            </select>
            <input class="ds-filter-value" value=${f.value}
                   placeholder=${f.op === "in" ? "a, b, c" : f.op === "eq" ? 'value (2024, true, "text")' : "number"}
                   onInput=${(e) => setFilter(f.id, { value: e.target.value })} />
            <button type="button" class="link" onClick=${() => setFilters((all) => all.filter((x) => x.id !== f.id))}>Remove</button>
          </div>`,
        )}
        <button type="button" class="link" id="search-add-filter"
                onClick=${() => setFilters((all) => [...all, { id: nextFilter++, field: "", op: "eq", value: "" }])}>+ Add a filter</button>
        ${filters.length ? html`<span class="muted"> All filters must hold.</span>` : null}
      </div>
    </form>
    <${ErrorBox} error=${error} />
    <div id="search-results">
      ${results === null ? null : results.length === 0
        ? html`<p class="muted">No chunk matched.</p>`
        : html`<p class="muted">${plural(results.length, "result")}, best first.</p>
          <ol class="ds-results">
            ${results.map(
              (r, i) => html`<li key=${i} class="ds-result">
                <div class="ds-result-head">
                  <span class="pill ds-score" title="the mode's own score">${Number(r.score || 0).toFixed(4)}</span>
                  <button type="button" class="link mono" onClick=${() => onOpen(r.chunk.documentId)}>${r.chunk.documentId}</button>
                  <span class="muted">#${r.chunk.position || 0}${r.chunk.page ? ` · page ${r.chunk.page}` : ""}${r.chunk.heading ? ` · ${r.chunk.heading}` : ""}</span>
                </div>
                <div class="ds-text"><${Highlighted} text=${r.chunk.text || ""} words=${words} /></div>
              </li>`,
            )}
          </ol>`}
    </div>
  </div>`;
}

// --- the page ---------------------------------------------------------------------------------

export default function Datasets({ caller }) {
  const developer = allows(caller, "developer");
  const [collections, setCollections] = useState(null);
  const [listError, setListError] = useState(null);
  const [selected, setSelected] = useState(hashCollection());
  const [opened, setOpened] = useState("");
  const [version, setVersion] = useState(0); // bumped when documents change

  const loadCollections = async () => {
    try {
      const all = [];
      let token = "";
      do {
        const query = new URLSearchParams({ page_size: "1000" });
        if (token) query.set("page_token", token);
        const reply = await api("GET", `/v1/collections?${query}`);
        all.push(...(reply.collections || []));
        token = reply.nextPageToken || "";
      } while (token);
      setCollections(all);
      setListError(null);
    } catch (err) {
      setListError(err);
      setCollections((old) => old || []);
    }
  };
  useEffect(() => {
    loadCollections();
  }, []);

  const select = (id) => {
    setSelected(id);
    setOpened("");
    setHashCollection(id);
  };
  const created = (made) => {
    setCollections((old) => [...(old || []).filter((c) => c.name !== made.name), made].sort((a, b) => (a.name < b.name ? -1 : 1)));
    select(idOf(made));
    loadCollections();
  };
  const changed = () => {
    setVersion((v) => v + 1);
    loadCollections();
  };
  const current = collections && collections.find((c) => idOf(c) === selected);

  return html`<section>
    <h2>Datasets</h2>
    <${Collections} caller=${caller} collections=${collections} error=${listError} selected=${selected}
      onSelect=${select} onChanged=${loadCollections} onCreated=${created} />
    ${selected && collections && !current
      ? html`<p class="muted">Collection <span class="mono">${selected}</span> is not among yours.</p>`
      : null}
    ${current
      ? html`<div id="collection-detail" data-collection=${selected}>
          <h3 class="ds-title">${current.displayName || selected} <span class="muted mono">collections/${selected}</span></h3>
          <div class="grid2 ds-grid">
            <div>
              ${developer
                ? html`<${Uploader} collection=${selected} onUploaded=${changed} />`
                : html`<p class="muted card">Uploading needs a developer key; yours can list and search.</p>`}
              <${Documents} caller=${caller} collection=${selected} version=${version} onChanged=${changed}
                opened=${opened} onOpen=${setOpened} />
            </div>
            <div>
              <${Search} collection=${selected} onOpen=${setOpened} />
              ${opened ? html`<${Chunks} collection=${selected} documentId=${opened} onClose=${() => setOpened("")} />` : null}
            </div>
          </div>
        </div>`
      : collections && collections.length
        ? html`<p class="muted">Choose a collection above to upload to it, list its documents and search it.</p>`
        : null}
  </section>`;
}
