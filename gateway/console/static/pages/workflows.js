// Workflows: the tenant's workflow apps. Open one in the visual editor
// (workflows/editor.js) to change, save, publish and run it; developers start
// new ones from a template or an imported file. #/workflows?open=ID opens one.

import { api } from "../api.js";
import { html, useEffect, useState, useLoad, Table, ErrorBox, Loading, fmtTime } from "../ui.js";
import { allows } from "../app.js";
import { Editor } from "../workflows/editor.js";
import { byType, fromText } from "../workflows/model.js";
import { TEMPLATES } from "../workflows/templates.js";

const idOf = (w) => w.name.replace(/^workflows\//, "");

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

const opened = () => new URLSearchParams(location.hash.split("?")[1] || "").get("open");

export default function Workflows({ caller }) {
  const developer = allows(caller, "developer");
  const workflows = useLoad(() => listAll("/v1/workflows", "workflows"));
  const nodeTypes = useLoad(() => api("GET", "/v1/workflows:nodeTypes").then((r) => r.nodeTypes || []));
  const [lists, setLists] = useState({ model: [], collections: [] });
  const [editing, setEditing] = useState(null); // a Workflow with its definition
  const [error, setError] = useState(null);

  useEffect(() => {
    api("GET", "/v1/router/models").then((r) => setLists((l) => ({ ...l, model: (r.models || []).map((m) => m.alias || m.name) })), () => {});
    listAll("/v1/collections", "collections").then((cs) => setLists((l) => ({ ...l, collections: cs.map((c) => c.name.replace(/^collections\//, "")) })), () => {});
    const id = opened();
    if (id) open({ name: `workflows/${id}` });
  }, []);

  const open = async (w) => {
    setError(null);
    try {
      setEditing(await api("GET", `/v1/${w.name}`));
      history.replaceState(null, "", `#/workflows?open=${encodeURIComponent(idOf(w))}`);
    } catch (e) {
      setError(e);
    }
  };
  const start = (doc) => setEditing({ name: "", displayName: "", definition: structuredClone(doc), latestVersion: 0, publishedVersion: 0 });
  const importNew = async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    try {
      start(fromText(await file.text()));
    } catch (err) {
      setError(err);
    }
  };
  const remove = async (w) => {
    if (!confirm(`Delete the workflow ${idOf(w)}, its versions and its runs' records?`)) return;
    setError(null);
    try {
      await api("DELETE", `/v1/${w.name}`);
      workflows.reload();
    } catch (err) {
      setError(err);
    }
  };
  const close = () => {
    setEditing(null);
    history.replaceState(null, "", "#/workflows");
    workflows.reload();
  };

  if (editing && nodeTypes.data) {
    return html`<${Editor} key=${editing.name || "new"} workflow=${editing} nodeTypes=${nodeTypes.data} types=${byType(nodeTypes.data)}
      lists=${lists} developer=${developer} onClose=${close}
      onSaved=${(w) => { if (!editing.name && w.name) history.replaceState(null, "", `#/workflows?open=${encodeURIComponent(idOf(w))}`); }} />`;
  }

  const stop = (fn) => (e) => {
    e.stopPropagation();
    fn();
  };
  return html`<section>
    <h2>Workflows</h2>
    <p class="muted">Apps drawn as steps: models, retrieval, branches, maps, HTTP calls and tasks (docs/workflows.md).</p>
    <${ErrorBox} error=${workflows.error || nodeTypes.error || error} />
    ${developer ? html`<div class="card" id="wf-new">
      <h3>New workflow</h3>
      <div class="row">
        ${TEMPLATES.map((t) => html`<button type="button" class="secondary" data-template=${t.id} onClick=${() => start(t.doc)}>${t.title}</button>`)}
        <label class="secondary wf-file">Import a file…
          <input type="file" id="wf-import-new" class="ds-hidden" accept=".yaml,.yml,.json,application/json" onChange=${importNew} /></label>
      </div>
    </div>` : null}
    <div id="workflows-table">
      ${workflows.loading && !workflows.data ? html`<${Loading} />` : html`<${Table} rows=${workflows.data || []} onRow=${open}
        empty=${developer ? "No workflows yet: start one above." : "No workflows yet; a developer key creates them."} columns=${[
          { label: "ID", value: (w) => html`<span class="mono">${idOf(w)}</span>` },
          { label: "Name", value: (w) => w.displayName || "—" },
          { label: "Latest", value: (w) => `v${w.latestVersion}` },
          { label: "Published", value: (w) => (w.publishedVersion ? `v${w.publishedVersion}` : "—") },
          { label: "Updated", value: (w) => fmtTime(w.updateTime) },
          { label: "", value: (w) => html`<span class="actions">
            <button class="link" data-workflow=${idOf(w)} data-action="open" onClick=${stop(() => open(w))}>Open</button>
            ${developer ? html`<button class="link bad" data-workflow=${idOf(w)} data-action="delete" onClick=${stop(() => remove(w))}>Delete</button>` : null}
          </span>` },
        ]} />`}
    </div>
  </section>`;
}
