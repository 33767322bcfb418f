// A workflow's saved versions, newest first: publish one, open one in the
// editor (saving it makes it the newest), or compare two as YAML, line by line.

import { api } from "../api.js";
import Diff from "../vendor/diff.js";
import { html, useState, useLoad, ErrorBox, Loading, fmtTime } from "../ui.js";
import { toYaml } from "./model.js";

async function allVersions(id) {
  const all = [];
  let token = "";
  do {
    const r = await api("GET", `/v1/workflows/${encodeURIComponent(id)}/versions?page_size=100${token ? `&page_token=${encodeURIComponent(token)}` : ""}`);
    all.push(...(r.versions || []));
    token = r.nextPageToken || "";
  } while (token);
  return all;
}

export function Versions({ workflow, developer, onOpen, onPublished, tick }) {
  const id = workflow.name.replace(/^workflows\//, "");
  const versions = useLoad(() => allVersions(id), [id, tick]);
  const [pair, setPair] = useState([null, null]); // [older, newer] version numbers
  const [error, setError] = useState(null);
  const list = versions.data || [];
  const byNumber = Object.fromEntries(list.map((v) => [v.version, v]));
  const publish = async (version) => {
    setError(null);
    try {
      onPublished(await api("POST", `/v1/workflows/${encodeURIComponent(id)}:publish`, { version }));
    } catch (e) {
      setError(e);
    }
  };
  const pick = (i, version) => setPair(i === 0 ? [version, pair[1]] : [pair[0], version]);
  const [a, b] = [byNumber[pair[0]], byNumber[pair[1]]];
  return html`<div id="wf-versions">
    <${ErrorBox} error=${versions.error || error} />
    ${versions.loading && !versions.data ? html`<${Loading} />` : null}
    <table>
      <thead><tr><th>Version</th><th>Saved</th><th>By</th><th>Compare</th><th></th></tr></thead>
      <tbody>${list.map((v) => html`<tr key=${v.version} data-version=${v.version}>
        <td>v${v.version} ${v.version === workflow.publishedVersion ? html`<span class="pill good">published</span>` : null}
          ${v.version === workflow.latestVersion ? html`<span class="pill">latest</span>` : null}</td>
        <td>${fmtTime(v.createTime)}</td>
        <td class="mono">${(v.actor || "").split("/").pop() || "—"}</td>
        <td><label class="wf-check"><input type="radio" name="wf-old" checked=${pair[0] === v.version} onChange=${() => pick(0, v.version)} /> from</label>
          <label class="wf-check"><input type="radio" name="wf-new" checked=${pair[1] === v.version} onChange=${() => pick(1, v.version)} /> to</label></td>
        <td class="actions">
          <button type="button" class="link" data-action="open" onClick=${() => onOpen(v)}>Open</button>
          ${developer && v.version !== workflow.publishedVersion
            ? html`<button type="button" class="link" data-action="publish" onClick=${() => publish(v.version)}>Publish</button>` : null}
        </td>
      </tr>`)}</tbody>
    </table>
    ${a && b ? html`<${VersionDiff} a=${a} b=${b} />` : html`<p class="muted">Pick a "from" and a "to" version to compare them.</p>`}
  </div>`;
}

function VersionDiff({ a, b }) {
  const parts = Diff.diffLines(toYaml(a.definition || {}), toYaml(b.definition || {}));
  const changed = parts.some((p) => p.added || p.removed);
  return html`<div class="card">
    <h3>v${a.version} → v${b.version}</h3>
    ${changed ? html`<pre class="json wf-diff" id="wf-diff">${parts.map((p) => html`<span class=${p.added ? "add" : p.removed ? "del" : ""}>${
      p.value.replace(/\n$/, "").split("\n").map((line) => `${p.added ? "+ " : p.removed ? "- " : "  "}${line}\n`).join("")
    }</span>`)}</pre>` : html`<p class="muted" id="wf-diff">The two versions are the same.</p>`}
  </div>`;
}
