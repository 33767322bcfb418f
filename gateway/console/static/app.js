// The console's shell: sign in with a key, then a page per area, chosen by the
// URL's hash (#/models). What the nav offers follows the key's role, read from
// GET /v1/caller; the gateway enforces the same roles on every call anyway.

import { api, session, ApiError } from "./api.js";
import { html, render, useEffect, useState, ErrorBox } from "./ui.js";

const ROLES = { user: 0, developer: 1, admin: 2 };

// Each page: its hash, title, module under pages/ and the least role it needs.
export const PAGES = [
  { path: "models", title: "Models", role: "user" },
  { path: "playground", title: "Playground", role: "user" },
  { path: "datasets", title: "Datasets", role: "user" },
  { path: "apps", title: "Apps", role: "user" },
  { path: "workflows", title: "Workflows", role: "user" },
  { path: "tasks", title: "Tasks", role: "user" },
  { path: "usage", title: "Usage", role: "developer" },
  { path: "audit", title: "Audit", role: "admin" },
  { path: "keys", title: "Keys and tenants", role: "admin" },
];

export const allows = (caller, role) => ROLES[caller.role] >= ROLES[role];

function currentPath() {
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  return PAGES.some((p) => p.path === path) ? path : "models";
}

function SignIn({ onDone, error }) {
  const [key, setKey] = useState("");
  const submit = (e) => {
    e.preventDefault();
    if (key.trim()) onDone(key.trim());
  };
  return html`<main class="signin">
    <h1>infergate</h1>
    <form onSubmit=${submit}>
      <label class="field"><span>API key</span>
        <input id="key" type="password" autocomplete="off" value=${key} onInput=${(e) => setKey(e.target.value)}
               placeholder="igk_…" autofocus />
      </label>
      <button type="submit">Sign in</button>
      <p class="muted">The key stays in this tab (sessionStorage) and is sent only to this gateway.
        The first start of a gateway prints an admin key; <code>infergate keys create</code> makes more.</p>
      <${ErrorBox} error=${error} />
    </form>
  </main>`;
}

function Denied({ page, caller }) {
  return html`<section><h2>${page.title}</h2>
    <p class="error" role="alert">This page needs the ${page.role} role; your key is a ${caller.role} key
      of ${caller.tenant}. Sign in with another key, or ask an admin for one.</p></section>`;
}

function Shell({ caller, onSignOut }) {
  const [path, setPath] = useState(currentPath());
  const [Page, setPage] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    const onHash = () => setPath(currentPath());
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  const page = PAGES.find((p) => p.path === path);
  const permitted = allows(caller, page.role);
  useEffect(() => {
    setPage(null);
    setError(null);
    if (!permitted) return undefined;
    let live = true; // a page module that loads after the user moved on is dropped
    import(`./pages/${page.path}.js`).then(
      (m) => live && setPage(() => m.default),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [path]);
  return html`<div class="shell">
    <nav>
      <strong class="brand">infergate</strong>
      ${PAGES.filter((p) => allows(caller, p.role)).map(
        (p) => html`<a href=${"#/" + p.path} class=${p.path === path ? "active" : ""}>${p.title}</a>`,
      )}
      <span class="who" title=${caller.key}>${caller.tenant.replace("tenants/", "")} · ${caller.role}</span>
      <button class="link" onClick=${onSignOut}>Sign out</button>
    </nav>
    <main id="page" data-page=${page.path}>
      ${!permitted ? html`<${Denied} page=${page} caller=${caller} />` : null}
      <${ErrorBox} error=${error} />
      ${Page ? html`<${Page} caller=${caller} />` : null}
    </main>
  </div>`;
}

function App() {
  const [caller, setCaller] = useState(null);
  const [error, setError] = useState(null);
  const [checking, setChecking] = useState(true);
  const identify = () =>
    api("GET", "/v1/caller").then(
      (c) => {
        setCaller(c);
        setError(null);
        setChecking(false);
      },
      (e) => {
        if (e instanceof ApiError && e.status === 401) session.signOut();
        setCaller(null);
        setError(session.key() || e.status !== 401 ? e : null);
        setChecking(false);
      },
    );
  useEffect(() => {
    // With auth off any call is admin: ask the gateway. With no key kept, a 401
    // is the likely answer; the sign-in form shows either way.
    identify();
  }, []);
  if (checking) return html`<p class="muted pad">Connecting…</p>`;
  if (!caller) {
    return html`<${SignIn} error=${error} onDone=${(key) => {
      session.signIn(key);
      setChecking(true);
      identify();
    }} />`;
  }
  return html`<${Shell} caller=${caller} onSignOut=${() => {
    session.signOut();
    setCaller(null);
  }} />`;
}

render(html`<${App} />`, document.getElementById("root"));
