// Keys and tenants (admin): tenants with their limits (GET/POST /v1/tenants)
// and the API keys of the chosen one (GET/POST /v1/tenants/{t}/keys, DELETE
// .../keys/{id} to revoke). A new key's secret is in the create response only:
// it is shown once, in a marked box with a copy button, kept in this page's
// memory until dismissed and never fetched or shown again.

import { api } from "../api.js";
import { html, useState, useRef, useLoad, Table, Field, ErrorBox, fmtTime } from "../ui.js";

const ROLES = ["user", "developer", "admin"];
const limit = (n) => (n ? Number(n).toLocaleString() : "unlimited");
const short = (name) => name.replace(/^tenants\//, "");
const whole = (v) => Math.max(0, Math.floor(Number(v) || 0));

// Requests and tokens per minute inputs (0 or empty: unlimited).
function Limits({ rpm, tpm, setRpm, setTpm, prefix }) {
  return html`
    <${Field} label="Requests / min" hint="0: unlimited">
      <input id=${prefix + "-rpm"} type="number" min="0" step="1" value=${rpm} onInput=${(e) => setRpm(e.target.value)} />
    <//>
    <${Field} label="Tokens / min" hint="0: unlimited">
      <input id=${prefix + "-tpm"} type="number" min="0" step="1" value=${tpm} onInput=${(e) => setTpm(e.target.value)} />
    <//>`;
}

function NewTenant({ onCreated }) {
  const [id, setId] = useState("");
  const [display, setDisplay] = useState("");
  const [rpm, setRpm] = useState("0");
  const [tpm, setTpm] = useState("0");
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const tenant = { displayName: display.trim() || id.trim(), requestsPerMinute: whole(rpm), tokensPerMinute: whole(tpm) };
      const made = await api("POST", `/v1/tenants?tenant_id=${encodeURIComponent(id.trim())}`, tenant);
      setId("");
      setDisplay("");
      onCreated(made.name);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="row" onSubmit=${submit}>
    <${Field} label="New tenant id"><input id="tenant-new-id" value=${id} required placeholder="acme" onInput=${(e) => setId(e.target.value)} /><//>
    <${Field} label="Display name"><input id="tenant-new-name" value=${display} placeholder="Acme Corp" onInput=${(e) => setDisplay(e.target.value)} /><//>
    <${Limits} prefix="tenant" rpm=${rpm} tpm=${tpm} setRpm=${setRpm} setTpm=${setTpm} />
    <button type="submit" id="tenant-create" disabled=${!id.trim()}>Create tenant</button>
  </form>
  <${ErrorBox} error=${error} />`;
}

// The one time a secret is visible. Copy uses the Clipboard API (secure
// contexts only: https or localhost); elsewhere the text is selected to copy by hand.
function Secret({ created, onDone }) {
  const box = useRef(null);
  const [copied, setCopied] = useState("");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(created.secret);
      setCopied("Copied.");
    } catch {
      box.current.select();
      setCopied("This browser would not copy it: the text is selected, press Ctrl+C (⌘C).");
    }
  };
  return html`<div id="key-secret" class="secret" role="alert">
    <strong>New key ${created.key.name} (${created.key.role}). Its secret is shown this once only: copy it now.</strong>
    <div class="row">
      <input ref=${box} readonly class="mono" size="70" value=${created.secret} onFocus=${(e) => e.target.select()} />
      <button type="button" id="key-copy" onClick=${copy}>Copy</button>
      <button type="button" class="secondary" id="key-secret-done" onClick=${onDone}>I have saved it</button>
    </div>
    ${copied ? html`<p class="muted">${copied}</p>` : null}
  </div>`;
}

function Keys({ tenant, caller }) {
  const keys = useLoad(() => api("GET", `/v1/${tenant}/keys`), [tenant]);
  const [role, setRole] = useState("user");
  const [rpm, setRpm] = useState("0");
  const [tpm, setTpm] = useState("0");
  const [created, setCreated] = useState(null); // holds the secret until dismissed
  const [confirming, setConfirming] = useState(null); // a key name about to be revoked
  const [error, setError] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      setCreated(await api("POST", `/v1/${tenant}/keys`, { role, requestsPerMinute: whole(rpm), tokensPerMinute: whole(tpm) }));
      keys.reload();
    } catch (err) {
      setError(err);
    }
  };
  const revoke = async (name) => {
    setError(null);
    try {
      await api("DELETE", `/v1/${name}`);
      setConfirming(null);
      keys.reload();
    } catch (err) {
      setError(err);
    }
  };
  const rows = (keys.data && keys.data.keys) || [];
  const action = (k) => {
    if (k.revokeTime) return html`<span class="pill bad">revoked ${fmtTime(k.revokeTime)}</span>`;
    if (confirming !== k.name) return html`<button class="secondary" onClick=${() => setConfirming(k.name)}>Revoke</button>`;
    return html`<span class="confirm">${k.name === caller.key ? "This is the key you are signed in with! " : ""}Revoke it for good?
      <button class="danger key-revoke-confirm" onClick=${() => revoke(k.name)}>Revoke</button>
      <button class="secondary" onClick=${() => setConfirming(null)}>Keep</button></span>`;
  };
  return html`<div class="card">
    <h3>Keys of ${short(tenant)}</h3>
    ${created ? html`<${Secret} created=${created} onDone=${() => setCreated(null)} />` : null}
    <form class="row" onSubmit=${create}>
      <${Field} label="Role">
        <select id="key-role" value=${role} onChange=${(e) => setRole(e.target.value)}>
          ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}
        </select>
      <//>
      <${Limits} prefix="key" rpm=${rpm} tpm=${tpm} setRpm=${setRpm} setTpm=${setTpm} />
      <button type="submit" id="key-create">Create key</button>
    </form>
    <${ErrorBox} error=${keys.error || error} />
    <div id="keys-table">
      <${Table} rows=${rows} empty=${keys.loading && !keys.data ? "Loading…" : "No keys."} columns=${[
        { label: "Key", value: (k) => html`<span class="mono">${k.name.split("/").pop()}</span>${k.name === caller.key ? html` <span class="pill">you</span>` : null}` },
        { label: "Role", value: (k) => k.role },
        { label: "Prefix", value: (k) => html`<span class="mono">${k.prefix}…</span>` },
        { label: "Requests / min", value: (k) => limit(k.requestsPerMinute) },
        { label: "Tokens / min", value: (k) => limit(k.tokensPerMinute) },
        { label: "Created", value: (k) => fmtTime(k.createTime) },
        { label: "Revoked", value: action },
      ]} />
    </div>
  </div>`;
}

export default function KeysPage({ caller }) {
  const tenants = useLoad(() => api("GET", "/v1/tenants?page_size=1000"));
  const [chosen, setChosen] = useState(caller.tenant);
  const rows = (tenants.data && tenants.data.tenants) || [];
  return html`<section>
    <h2>Keys and tenants</h2>
    <div class="card">
      <h3>Tenants</h3>
      <p class="muted">Limits apply to the tenant as a whole, on top of each key's own. Click a tenant for its keys.</p>
      <${ErrorBox} error=${tenants.error} />
      <div id="tenants-table">
        <${Table} rows=${rows} empty=${tenants.loading ? "Loading…" : "No tenants."} onRow=${(t) => setChosen(t.name)} columns=${[
          { label: "Tenant", value: (t) => html`<span class="mono">${short(t.name)}</span>${t.name === chosen ? html` <span class="pill good">shown</span>` : null}` },
          { label: "Display name", value: (t) => t.displayName || "" },
          { label: "Requests / min", value: (t) => limit(t.requestsPerMinute) },
          { label: "Tokens / min", value: (t) => limit(t.tokensPerMinute) },
          { label: "Created", value: (t) => fmtTime(t.createTime) },
        ]} />
      </div>
      <${NewTenant} onCreated=${(name) => { tenants.reload(); setChosen(name); }} />
    </div>
    <${Keys} key=${chosen} tenant=${chosen} caller=${caller} />
  </section>`;
}
