// Audit (admin): the audit log (GET /v1/audit), oldest first as the API pages
// it, optionally for one resource (an exact name such as tenants/acme). A row
// opens the event: its before and after JSON and the hash chain fields (each
// event carries the previous one's hash; `infergate audit verify` checks it).

import { api } from "../api.js";
import { html, useState, useEffect, useRef, useLoad, usePages, Pager, Table, Field, ErrorBox, Json, fmtTime } from "../ui.js";

const PAGE_SIZE = 50;

function Event({ event, onClose, onResource }) {
  const box = useRef(null);
  useEffect(() => box.current.scrollIntoView({ block: "nearest" }), [event.sequence]);
  return html`<div id="audit-detail" class="card" ref=${box}>
    <div class="row spread">
      <h3>Event ${event.sequence}: ${event.action}</h3>
      <button class="link" onClick=${onClose}>Close</button>
    </div>
    <dl class="facts">
      <dt>Time</dt><dd>${fmtTime(event.time)}</dd>
      <dt>Actor</dt><dd class="mono">${event.actor}</dd>
      <dt>Resource</dt><dd class="mono">${event.resource}
        <button class="link" onClick=${() => onResource(event.resource)}>only this resource</button></dd>
      <dt>Previous hash</dt><dd class="mono hash">${event.prevHash}</dd>
      <dt>Hash</dt><dd class="mono hash">${event.hash}</dd>
    </dl>
    <div class="grid2">
      <div><h3>Before</h3>${event.before ? html`<${Json} value=${event.before} />` : html`<p class="muted">Nothing (created).</p>`}</div>
      <div><h3>After</h3>${event.after ? html`<${Json} value=${event.after} />` : html`<p class="muted">Nothing (deleted).</p>`}</div>
    </div>
  </div>`;
}

export default function Audit() {
  const [draft, setDraft] = useState("");
  const [resource, setResource] = useState("");
  const pages = usePages();
  const [open, setOpen] = useState(null);
  const list = useLoad(() => {
    const q = new URLSearchParams({ page_size: PAGE_SIZE, page_token: pages.token });
    if (resource) q.set("resource", resource);
    return api("GET", `/v1/audit?${q}`);
  }, [resource, pages.token]);
  const filter = (value) => {
    setDraft(value);
    setResource(value.trim());
    pages.reset();
    setOpen(null);
  };
  const rows = (list.data && list.data.events) || [];
  const next = list.data && list.data.nextPageToken;
  return html`<section>
    <h2>Audit log</h2>
    <p class="muted">Every admin and app change, oldest first. Click an event for its before and after.</p>
    <form class="row" onSubmit=${(e) => { e.preventDefault(); filter(draft); }}>
      <${Field} label="Resource" hint="An exact name: tenants/acme, tenants/acme/keys/…, tenants/acme/apps/…">
        <input id="audit-resource" value=${draft} size="40" placeholder="every resource" onInput=${(e) => setDraft(e.target.value)} />
      <//>
      <button type="submit">Filter</button>
      ${resource ? html`<button type="button" class="secondary" onClick=${() => filter("")}>Clear</button>` : null}
      <button type="button" class="secondary" onClick=${list.reload}>Refresh</button>
    </form>
    <${ErrorBox} error=${list.error} />
    <div id="audit-table">
      <${Table} rows=${rows} empty=${list.loading && !list.data ? "Loading…" : "No events."} onRow=${setOpen} columns=${[
        { label: "#", value: (e) => e.sequence },
        { label: "Time", value: (e) => fmtTime(e.time) },
        { label: "Actor", value: (e) => html`<span class="mono">${e.actor}</span>` },
        { label: "Action", value: (e) => e.action },
        { label: "Resource", value: (e) => html`<span class="mono">${e.resource}</span>` },
      ]} />
    </div>
    <${Pager} pages=${pages} next=${next} />
    ${open ? html`<${Event} event=${open} onClose=${() => setOpen(null)} onResource=${filter} />` : null}
  </section>`;
}
