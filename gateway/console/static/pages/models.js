// Models: every alias and deployment with its live health (polled every 2 s),
// a latency chart per deployment over the minutes this page has been open,
// and the routing decision for a sample request (the Route dry run).

import { api } from "../api.js";
import { html, useState, useEffect, useInterval, Table, ErrorBox, Chart, Json, fmtMs, fmtTime, Field } from "../ui.js";
import { allows } from "../app.js";

const WINDOW_S = 300;
const POLL_MS = 2000;

function Health({ d }) {
  if (d.healthy) return html`<span class="pill good">healthy</span>`;
  return html`<span class="pill bad" title=${d.reason}>unhealthy</span>`;
}

function Breaker({ state }) {
  const kind = { closed: "good", open: "bad", half_open: "warn" }[state] || "";
  return html`<span class=${"pill " + kind}>${state || "closed"}</span>`;
}

function RouteForm({ models }) {
  const [model, setModel] = useState("");
  const [prompt, setPrompt] = useState("Hello!");
  const [decision, setDecision] = useState(null);
  const [error, setError] = useState(null);
  const chosen = model || (models[0] && models[0].alias) || "";
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      setDecision(await api("POST", "/v1/route", { model: chosen, messages: [{ role: "user", content: prompt }] }));
    } catch (err) {
      setDecision(null);
      setError(err);
    }
  };
  return html`<div class="card">
    <h3>Routing decision for a sample request</h3>
    <form class="row" onSubmit=${submit}>
      <${Field} label="Model alias">
        <select id="route-model" value=${chosen} onChange=${(e) => setModel(e.target.value)}>
          ${models.map((m) => html`<option value=${m.alias}>${m.alias}</option>`)}
        </select>
      <//>
      <${Field} label="Prompt"><input value=${prompt} onInput=${(e) => setPrompt(e.target.value)} size="40" /><//>
      <button type="submit">Show routing</button>
    </form>
    <${ErrorBox} error=${error} />
    ${decision ? html`<${Decision} decision=${decision} />` : null}
  </div>`;
}

export function Decision({ decision }) {
  return html`<div>
    <p>Strategy <b>${decision.strategy}</b>; chosen: <b id="route-chosen">${decision.deployment || "none"}</b>
      ${decision.provider ? html` (${decision.provider})` : null}</p>
    <${Table} rows=${decision.candidates || []} columns=${[
      { label: "#", value: (c) => (decision.candidates.indexOf(c) + 1) },
      { label: "Deployment", value: (c) => c.deployment },
      { label: "Provider", value: (c) => c.provider },
      { label: "Skipped because", value: (c) => c.skipReason || "—" },
    ]} />
    <h3>Exact upstream body</h3>
    <pre class="json">${decision.upstreamBody || "(this backend takes no JSON body)"}</pre>
  </div>`;
}

export default function Models({ caller }) {
  const [models, setModels] = useState([]);
  const [health, setHealth] = useState([]);
  const [history, setHistory] = useState({}); // deployment -> [[t], [ttft], [msPerToken]]
  const [error, setError] = useState(null);
  const detailed = allows(caller, "developer");

  useEffect(() => {
    api("GET", "/v1/router/models").then((r) => setModels(r.models || []), setError);
  }, []);

  const poll = async () => {
    if (!detailed) return;
    try {
      const r = await api("GET", "/v1/models/health");
      const deployments = r.deployments || [];
      setHealth(deployments);
      setError(null);
      const now = Date.now() / 1000;
      setHistory((old) => {
        const next = {};
        for (const d of deployments) {
          const key = `${d.model}/${d.deployment}`;
          const [ts, ttft, per] = old[key] || [[], [], []];
          const keep = ts.findIndex((t) => t >= now - WINDOW_S);
          const from = keep < 0 ? ts.length : keep;
          next[key] = [
            [...ts.slice(from), now],
            [...ttft.slice(from), d.ewmaTtftMs || 0],
            [...per.slice(from), d.ewmaMsPerToken || 0],
          ];
        }
        return next;
      });
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    poll();
  }, []);
  useInterval(poll, POLL_MS);

  return html`<section>
    <h2>Models</h2>
    <${ErrorBox} error=${error} />
    ${!detailed
      ? html`<p class="muted">Health, breakers and routing need a developer key; your key lists the aliases.</p>
          <${Table} rows=${models} columns=${[{ label: "Alias", value: (m) => m.alias }]} />`
      : html`
        <p class="muted">Live: refreshed every ${POLL_MS / 1000} s. The charts cover the time this page has been open (up to ${WINDOW_S / 60} minutes).</p>
        <${Table} rows=${health} empty="No deployments." columns=${[
          { label: "Alias", value: (d) => d.model },
          { label: "Deployment", value: (d) => html`<span class="mono">${d.deployment}</span>` },
          { label: "Provider", value: (d) => d.provider },
          { label: "Health", value: (d) => html`<${Health} d=${d} />` },
          { label: "Breaker", value: (d) => html`<${Breaker} state=${d.breakerState} />` },
          { label: "In flight", value: (d) => d.inFlight || 0 },
          { label: "TTFT (EWMA)", value: (d) => fmtMs(d.ewmaTtftMs) },
          { label: "Per token (EWMA)", value: (d) => fmtMs(d.ewmaMsPerToken) },
          { label: "Error rate", value: (d) => `${((d.errorRate || 0) * 100).toFixed(1)} %` },
          { label: "Calls / failures", value: (d) => `${d.requests || 0} / ${d.failures || 0}` },
          { label: "Last error", value: (d) => d.lastError || "—" },
          { label: "Last probe", value: (d) => fmtTime(d.lastProbeTime) || "—" },
        ]} />
        <div class="grid2">
          ${Object.entries(history).map(
            ([key, data]) => html`<div class="card"><${Chart} title=${key} data=${data}
              series=${[{ label: "TTFT ms" }, { label: "ms / token" }]} height=${180} /></div>`,
          )}
        </div>
        <${RouteForm} models=${models} />`}
  </section>`;
}
