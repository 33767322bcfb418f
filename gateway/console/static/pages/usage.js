// Usage: model calls summed by GET /v1/usage over the last hour, day or week,
// grouped by model, app, deployment (or tenant, for admins) in time buckets:
// two charts (requests, and tokens in + out, per bucket; one series per group
// value) and a totals table. A developer sees its own tenant, an admin all.

import { api } from "../api.js";
import { html, useState, useMemo, useLoad, useInterval, Table, Field, ErrorBox, Chart } from "../ui.js";
import { allows } from "../app.js";

const REFRESH_MS = 30000;
const RANGES = { hour: 3600, day: 86400, week: 7 * 86400 };
const BUCKETS = [[60, "1 minute"], [300, "5 minutes"], [900, "15 minutes"], [3600, "1 hour"], [6 * 3600, "6 hours"], [86400, "1 day"]];
const DEFAULT_BUCKET = { hour: 60, day: 900, week: 6 * 3600 };
const MAX_POINTS = 1000; // buckets per chart; wider ranges need wider buckets

const label = (row, group) => ((row.group || {})[group] || `(no ${group})`).replace(/^tenants\//, "");

// Rows (sparse: only buckets with calls) -> one dense series per group value.
function series(rows, group, from, to, width, pick) {
  const first = Math.floor(from / width) * width;
  const xs = [];
  for (let x = first; x <= to; x += width) xs.push(x);
  const names = [...new Set(rows.map((r) => label(r, group)))].sort();
  const ys = names.map(() => xs.map(() => 0));
  for (const r of rows) {
    const i = Math.round((Date.parse(r.bucketStart) / 1000 - first) / width);
    if (i >= 0 && i < xs.length) ys[names.indexOf(label(r, group))][i] += pick(r);
  }
  return { data: [xs, ...ys], series: names.map((n) => ({ label: n })) };
}

function totals(rows, group) {
  const by = new Map();
  for (const r of rows) {
    const name = label(r, group);
    const t = by.get(name) || { name, requests: 0, input: 0, output: 0, errors: 0 };
    t.requests += Number(r.requests || 0);
    t.input += Number(r.inputTokens || 0);
    t.output += Number(r.outputTokens || 0);
    t.errors += Number(r.errors || 0);
    by.set(name, t);
  }
  return [...by.values()].sort((a, b) => b.requests - a.requests);
}

const num = (n) => n.toLocaleString();

export default function Usage({ caller }) {
  const [range, setRange] = useState("hour");
  const [group, setGroup] = useState("model");
  const [bucket, setBucket] = useState(DEFAULT_BUCKET.hour);
  const groups = ["model", "app", "deployment", ...(allows(caller, "admin") ? ["tenant"] : [])];
  const usage = useLoad(() => {
    const to = Math.floor(Date.now() / 1000);
    const from = to - RANGES[range];
    const q = new URLSearchParams({
      start_time: new Date(from * 1000).toISOString(),
      end_time: new Date(to * 1000).toISOString(),
      group_by: group,
      bucket_seconds: bucket,
    });
    return api("GET", `/v1/usage?${q}`).then((r) => ({ rows: r.rows || [], from, to, group, bucket }));
  }, [range, group, bucket]);
  useInterval(() => document.hidden || usage.reload(), REFRESH_MS);

  const rows = (usage.data && usage.data.rows) || [];
  const charts = useMemo(() => {
    if (rows.length === 0) return null;
    const { from, to, group, bucket } = usage.data; // what the rows were asked for
    return {
      requests: series(rows, group, from, to, bucket, (r) => Number(r.requests || 0)),
      tokens: series(rows, group, from, to, bucket, (r) => Number(r.inputTokens || 0) + Number(r.outputTokens || 0)),
    };
  }, [usage.data]);
  const shown = usage.data ? usage.data.group : group;
  const table = totals(rows, shown);
  const all = table.reduce((a, t) => ({ name: "All", requests: a.requests + t.requests, input: a.input + t.input,
    output: a.output + t.output, errors: a.errors + t.errors }), { name: "All", requests: 0, input: 0, output: 0, errors: 0 });
  const pickRange = (r) => {
    setRange(r);
    setBucket(DEFAULT_BUCKET[r]);
  };
  const bucketsFor = BUCKETS.filter(([s]) => s < RANGES[range] && RANGES[range] / s <= MAX_POINTS);

  return html`<section>
    <h2>Usage</h2>
    <p class="muted">${allows(caller, "admin") ? "Every tenant's model calls" : `Model calls of ${caller.tenant}`};
      refreshed every ${REFRESH_MS / 1000} s. Task workers' calls count too (no app).</p>
    <div class="row">
      <${Field} label="Range">
        <select id="usage-range" value=${range} onChange=${(e) => pickRange(e.target.value)}>
          <option value="hour">Last hour</option><option value="day">Last day</option><option value="week">Last week</option>
        </select>
      <//>
      <${Field} label="Group by">
        <select id="usage-group" value=${group} onChange=${(e) => setGroup(e.target.value)}>
          ${groups.map((g) => html`<option value=${g}>${g}</option>`)}
        </select>
      <//>
      <${Field} label="Bucket">
        <select id="usage-bucket" value=${bucket} onChange=${(e) => setBucket(Number(e.target.value))}>
          ${bucketsFor.map(([s, name]) => html`<option value=${s}>${name}</option>`)}
        </select>
      <//>
      <button class="secondary" onClick=${usage.reload}>Refresh</button>
    </div>
    <${ErrorBox} error=${usage.error} />
    <div id="usage-chart">
      ${charts
        ? html`<div class="grid2">
            <div class="card"><${Chart} title="Requests per bucket" data=${charts.requests.data} series=${charts.requests.series} /></div>
            <div class="card"><${Chart} title="Tokens (in + out) per bucket" data=${charts.tokens.data} series=${charts.tokens.series} /></div>
          </div>`
        : html`<p class="muted">${usage.loading ? "Loading…" : "No model calls in this range."}</p>`}
    </div>
    <h3>Totals by ${shown}</h3>
    <div id="usage-table">
      <${Table} rows=${table.length ? [...table, all] : []} empty="No model calls in this range." columns=${[
        { label: shown[0].toUpperCase() + shown.slice(1), value: (t) => (t === all ? html`<b>All</b>` : t.name) },
        { label: "Requests", value: (t) => num(t.requests) },
        { label: "Input tokens", value: (t) => num(t.input) },
        { label: "Output tokens", value: (t) => num(t.output) },
        { label: "Errors", value: (t) => num(t.errors) },
        { label: "Error rate", value: (t) => `${t.requests ? ((100 * t.errors) / t.requests).toFixed(1) : "0.0"} %` },
      ]} />
    </div>
  </section>`;
}
