// The workflow editor: a palette of node types (ListNodeTypes), the canvas,
// and a side panel that edits the selected node, runs the workflow or lists
// its versions. Every change is checked by ValidateWorkflow as you go; its
// problems mark the nodes and fields they name. Undo and redo go back and
// forth over whole documents. Keys: Ctrl/Cmd+Z undo, Ctrl/Cmd+Shift+Z or
// Ctrl+Y redo, Ctrl/Cmd+S save, Delete removes the selected node or edge
// (on the canvas), Escape clears the selection.

import { api } from "../api.js";
import { html, useEffect, useRef, useState, ErrorBox } from "../ui.js";
import { Canvas } from "./canvas.js";
import { DocumentInspector, NodeInspector } from "./inspector.js";
import { addNode, fromText, layout, problemsByNode, removeNode, same, toJson, toYaml } from "./model.js";
import { RunPanel, statusOf } from "./run.js";
import { Versions } from "./versions.js";

const LIMIT = 200; // undo steps kept

// Documents as a history: set() pushes (typing into one field within a second
// replaces the last step instead), replace() rewrites the present.
function useHistory(initial) {
  const [h, setH] = useState({ past: [], doc: initial, future: [], key: "", at: 0 });
  return {
    doc: h.doc,
    canUndo: h.past.length > 0,
    canRedo: h.future.length > 0,
    set: (doc, key = "") =>
      setH((s) => {
        if (same(doc, s.doc)) return s;
        const now = Date.now();
        if (key && key === s.key && now - s.at < 1000) return { ...s, doc, at: now };
        return { past: [...s.past, s.doc].slice(-LIMIT), doc, future: [], key, at: now };
      }),
    // The server's form of what was sent, unless it was edited meanwhile.
    saved: (sent, doc) => setH((s) => (s.doc === sent ? { ...s, doc } : s)),
    undo: () => setH((s) => (s.past.length ? { past: s.past.slice(0, -1), doc: s.past[s.past.length - 1], future: [s.doc, ...s.future], key: "", at: 0 } : s)),
    redo: () => setH((s) => (s.future.length ? { past: [...s.past, s.doc], doc: s.future[0], future: s.future.slice(1), key: "", at: 0 } : s)),
  };
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

const idOf = (w) => (w.name || "").replace(/^workflows\//, "");

// props: workflow (a Workflow with its definition; name "" for a new one),
// nodeTypes, types (by name), lists (datalists), developer, onSaved(workflow), onClose
export function Editor({ workflow: initial, nodeTypes, types, lists, developer, onSaved, onClose }) {
  const [workflow, setWorkflow] = useState(initial);
  const history = useHistory(layout(initial.definition));
  const doc = history.doc;
  // Laid out as shown, so a workflow saved without positions (the API, the
  // CLI) does not open as changed.
  const [savedDoc, setSavedDoc] = useState(initial.name ? layout(initial.definition) : null);
  const [saving, setSaving] = useState(false);
  const [runDoc, setRunDoc] = useState(null); // { version, doc }: what a run shown ran
  const [newId, setNewId] = useState("");
  const [selected, setSelected] = useState(null);
  const [problems, setProblems] = useState([]);
  const [checking, setChecking] = useState(false);
  const [panel, setPanel] = useState("edit"); // edit | run | versions
  const [run, setRun] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState("");
  const [tick, setTick] = useState(0); // reloads the versions after a save or publish
  const fileInput = useRef(null);
  const readOnly = !developer;
  const isNew = !workflow.name;
  const dirty = !savedDoc || !same(doc, savedDoc);

  // Check the document as it changes (a beat after the last change); a key
  // that cannot save cannot check either.
  useEffect(() => {
    if (readOnly) return undefined;
    let live = true;
    setChecking(true);
    const timer = setTimeout(() => {
      api("POST", "/v1/workflows:validate", { definition: doc }).then(
        (r) => live && (setProblems(r.problems || []), setChecking(false)),
        (e) => live && (setProblems([{ node: "", field: "", message: `could not check: ${e.message}` }]), setChecking(false)),
      );
    }, 300);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [doc]);

  const byNode = problemsByNode(problems, doc);
  const change = (next, key) => {
    setNotice("");
    history.set(next, key);
  };
  const drop = (type, at) => {
    const added = addNode(doc, type, types, at);
    change(added.doc);
    setSelected(added.id);
    setPanel("edit");
  };
  const place = (type) => {
    // Beside the rightmost node, for a click on the palette instead of a drag.
    const right = Math.max(0, ...doc.nodes.map((n) => (n.position ? n.position.x : 0)));
    const last = doc.nodes.find((n) => n.position && n.position.x === right);
    drop(type, { x: right + 260, y: last ? last.position.y : 60 });
  };

  const save = async () => {
    if (saving) return;
    setError(null);
    setNotice("");
    setSaving(true);
    const sent = doc;
    try {
      const id = isNew ? newId.trim() : idOf(workflow);
      const saved = isNew
        ? await api("POST", `/v1/workflows?workflow_id=${encodeURIComponent(id)}`, {
          displayName: workflow.displayName || "", description: workflow.description || "", definition: doc,
        })
        : await api("PATCH", `/v1/workflows/${encodeURIComponent(id)}`, { definition: doc, displayName: workflow.displayName || "" });
      setWorkflow(saved);
      setSavedDoc(saved.definition);
      history.saved(sent, saved.definition); // the server's form of it: what an export gives back
      setNotice(`Saved as version ${saved.version}.`);
      setTick((t) => t + 1);
      onSaved(saved);
    } catch (e) {
      setError(e);
    }
    setSaving(false);
  };
  const publish = async () => {
    setError(null);
    try {
      const done = await api("POST", `/v1/workflows/${encodeURIComponent(idOf(workflow))}:publish`, { version: workflow.latestVersion });
      setWorkflow({ ...workflow, publishedVersion: done.publishedVersion });
      setNotice(`Published version ${done.publishedVersion}.`);
      setTick((t) => t + 1);
      onSaved(done);
    } catch (e) {
      setError(e);
    }
  };
  const importFile = async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    setError(null);
    try {
      change(layout(fromText(await file.text())));
      setSelected(null);
      setNotice(`Imported ${file.name}.`);
    } catch (err) {
      setError(err);
    }
  };
  const name = isNew ? newId.trim() || "workflow" : idOf(workflow);
  const close = () => {
    if (!dirty || readOnly || confirm("Leave the editor? Its unsaved changes will be lost.")) onClose();
  };
  useEffect(() => {
    if (!dirty || readOnly) return undefined;
    const warn = (e) => e.preventDefault();
    addEventListener("beforeunload", warn);
    return () => removeEventListener("beforeunload", warn);
  }, [dirty, readOnly]);

  // A run shows on the version it ran, which the draft may no longer be.
  const ranVersion = run && run.version;
  useEffect(() => {
    if (isNew || !ranVersion || (runDoc && runDoc.version === ranVersion)) return;
    api("GET", `/v1/workflows/${encodeURIComponent(idOf(workflow))}?version=${ranVersion}`).then(
      (w) => setRunDoc({ version: ranVersion, doc: layout(w.definition) }),
      setError,
    );
  }, [ranVersion]);
  const showingRun = panel === "run" && runDoc && run && runDoc.version === run.version && !same(runDoc.doc, doc);
  const shown = showingRun ? runDoc.doc : doc;

  const keys = (e) => {
    const mod = e.ctrlKey || e.metaKey;
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName);
    if (mod && e.key.toLowerCase() === "s") {
      e.preventDefault();
      if (developer && dirty && !saving) save();
    } else if (typing) {
      // the field's own undo
    } else if (mod && e.key.toLowerCase() === "z") {
      e.preventDefault();
      if (e.shiftKey) history.redo();
      else history.undo();
    } else if (mod && e.key.toLowerCase() === "y") {
      e.preventDefault();
      history.redo();
    } else if (e.key === "Escape") {
      setSelected(null);
    }
  };

  const node = selected && doc.nodes.find((n) => n.id === selected);
  const count = problems.length;
  const hasStart = doc.nodes.some((n) => n.type === "start");
  return html`<section class="wf-editor" id="wf-editor" onKeyDown=${keys}>
    <div class="row spread wf-toolbar">
      <div class="row">
        <button type="button" class="link" id="wf-close" onClick=${close}>← Workflows</button>
        ${isNew
          ? html`<label class="field"><span>New workflow ID</span><input id="wf-new-id" value=${newId} placeholder="letters, digits, - and _"
              onInput=${(e) => setNewId(e.target.value)} /></label>`
          : html`<h2 class="wf-title">${workflow.displayName || idOf(workflow)} <span class="muted mono">v${workflow.latestVersion}</span>
              ${workflow.publishedVersion ? html`<span class="pill good" id="wf-published">published v${workflow.publishedVersion}</span>` : html`<span class="pill" id="wf-published">not published</span>`}</h2>`}
      </div>
      <div class="row">
        <button type="button" class="secondary" id="wf-undo" title="Undo (Ctrl+Z)" disabled=${!history.canUndo} onClick=${history.undo}>Undo</button>
        <button type="button" class="secondary" id="wf-redo" title="Redo (Ctrl+Shift+Z)" disabled=${!history.canRedo} onClick=${history.redo}>Redo</button>
        ${readOnly ? html`<span class="pill" id="wf-read-only" title="a developer key edits workflows">read-only</span>`
          : html`<span id="wf-check" class=${`pill ${checking ? "" : count ? "bad" : "good"}`}>${checking ? "checking…" : count ? `${count} problem${count > 1 ? "s" : ""}` : "valid"}</span>`}
        ${developer ? html`<button type="button" id="wf-save" title="Save a new version (Ctrl+S)" disabled=${saving || !dirty || (isNew && !newId.trim())} onClick=${save}>${isNew ? "Create" : dirty ? "Save" : "Saved"}</button>
          <button type="button" class="secondary" id="wf-publish" disabled=${isNew || dirty || workflow.publishedVersion === workflow.latestVersion} onClick=${publish}>Publish v${workflow.latestVersion || 1}</button>` : null}
        <button type="button" class="secondary" id="wf-import" disabled=${readOnly} onClick=${() => fileInput.current.click()}>Import</button>
        <input type="file" id="wf-import-file" class="ds-hidden" accept=".yaml,.yml,.json,application/json" ref=${fileInput} onChange=${importFile} />
        <button type="button" class="secondary" id="wf-export-yaml" onClick=${() => download(`${name}.yaml`, toYaml(doc), "application/yaml")}>Export YAML</button>
        <button type="button" class="secondary" id="wf-export-json" onClick=${() => download(`${name}.json`, toJson(doc), "application/json")}>Export JSON</button>
      </div>
    </div>
    ${notice ? html`<p class="ok" id="wf-notice">${notice}</p>` : null}
    <${ErrorBox} error=${error} />
    <div class="wf-body">
      <aside class="wf-palette" id="wf-palette">
        <h3>Nodes</h3>
        ${nodeTypes.map((t) => html`<div class="wf-palette-item" draggable=${!readOnly && !(t.type === "start" && hasStart)}
            data-type=${t.type} title=${t.description}
            onDragStart=${(e) => { e.dataTransfer.setData("application/x-infergate-node", t.type); e.dataTransfer.effectAllowed = "copy"; }}>
          <span class="mono">${t.type}</span>
          <button type="button" class="link" aria-label=${`add ${t.type}`} disabled=${readOnly || (t.type === "start" && hasStart)} onClick=${() => place(t.type)}>+</button>
        </div>`)}
        <p class="muted">Drag a node onto the canvas, then drag from a node's right-hand port to another's left-hand one.
          Ctrl + wheel zooms; drag the background to pan.</p>
      </aside>
      <div class="wf-main">
        ${showingRun ? html`<p class="muted" id="wf-run-version-note">Showing version ${runDoc.version}, which this run ran; the draft differs.</p>` : null}
        <${Canvas} doc=${shown} types=${types} problems=${showingRun ? {} : byNode} status=${panel === "run" ? statusOf(run) : {}} selected=${selected}
          readOnly=${readOnly || showingRun} onChange=${(d) => change(d)} onSelect=${setSelected} onDrop=${drop} />
        ${count ? html`<ul class="wf-problems" id="wf-problems">${problems.map((p) => html`<li class="wf-problem">
          ${p.node ? html`<button type="button" class="link" onClick=${() => { setSelected(p.node); setPanel("edit"); }}>${p.node}</button>` : null}
          ${p.field ? html`<span class="mono">${p.field}</span>: ` : null}${p.message}</li>`)}</ul>` : null}
      </div>
      <div class="wf-side">
        <div class="wf-tabs" role="tablist">
          ${[["edit", node ? "Node" : "Workflow"], ["run", "Run"], ["versions", "Versions"]].map(([key, label]) => html`<button type="button" role="tab"
            id=${`wf-tab-${key}`} class=${panel === key ? "active" : ""} aria-selected=${panel === key} disabled=${key !== "edit" && isNew}
            onClick=${() => setPanel(key)}>${label}</button>`)}
        </div>
        ${panel === "edit" && node ? html`<${NodeInspector} key=${node.id} doc=${doc} node=${node} types=${types} problems=${byNode[node.id]}
            lists=${lists} readOnly=${readOnly} onChange=${(d) => change(d, `node:${node.id}`)} onSelect=${setSelected}
            onRemove=${() => { change(removeNode(doc, node.id)); setSelected(null); }} />` : null}
        ${panel === "edit" && !node ? html`<${DocumentInspector} doc=${doc} types=${types} problems=${byNode[""]} readOnly=${readOnly}
            onChange=${(d) => change(d, "document")} />` : null}
        ${isNew ? null : html`<div hidden=${panel !== "run"}>
          <${RunPanel} workflow=${workflow} doc=${doc} dirty=${dirty} run=${run} setRun=${setRun} selected=${selected} />
        </div>`}
        ${panel === "versions" && !isNew ? html`<${Versions} workflow=${workflow} developer=${developer} tick=${tick}
            onPublished=${(w) => { setWorkflow({ ...workflow, publishedVersion: w.publishedVersion }); setTick((t) => t + 1); onSaved(w); }}
            onOpen=${(v) => { change(layout(v.definition)); setNotice(`Opened version ${v.version}: saving makes it the latest.`); setPanel("edit"); }} />` : null}
      </div>
    </div>
    ${Object.entries(lists).map(([k, items]) => html`<datalist id=${`wf-list-${k}`}>${items.map((x) => html`<option value=${x} />`)}</datalist>`)}
  </section>`;
}
