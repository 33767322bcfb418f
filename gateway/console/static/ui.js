// Shared pieces every page uses. Everything from the gateway (model output,
// document text, names) is rendered as text by htm/Preact, never as HTML:
// there is no dangerouslySetInnerHTML anywhere in the console.

import { h, render } from "./vendor/preact.js";
import { useEffect, useRef, useState } from "./vendor/hooks.js";
import htm from "./vendor/htm.js";
import uPlot from "./vendor/uplot.js";

export const html = htm.bind(h);
export { h, render };
export * from "./vendor/hooks.js";

// Runs `load` when the page opens (and when `deps` change); { data, error, loading, reload }.
export function useLoad(load, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

// Calls `fn` every `ms` while the page is open.
export function useInterval(fn, ms) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, [ms]);
}

// An error from the gateway, worded for a person; a 403 says which role is missing.
export function ErrorBox({ error }) {
  if (!error) return null;
  const text = error.denied
    ? `Your key's role cannot do this (${error.message}). Ask an admin for a key with the role it needs.`
    : error.message || String(error);
  return html`<p class="error" role="alert">${text}</p>`;
}

export function Loading() {
  return html`<p class="muted">Loading…</p>`;
}

// rows: objects; columns: [{ label, value: (row) => text or vnode }]
export function Table({ rows, columns, empty = "Nothing here yet.", onRow }) {
  if (!rows || rows.length === 0) return html`<p class="muted">${empty}</p>`;
  return html`<table>
    <thead><tr>${columns.map((c) => html`<th>${c.label}</th>`)}</tr></thead>
    <tbody>
      ${rows.map(
        (row, i) => html`<tr key=${i} class=${onRow ? "clickable" : ""} onClick=${onRow ? () => onRow(row) : undefined}>
          ${columns.map((c) => html`<td>${c.value(row)}</td>`)}
        </tr>`,
      )}
    </tbody>
  </table>`;
}

// A labelled form field; `children` is the input.
export function Field({ label, children, hint }) {
  return html`<label class="field"><span>${label}</span>${children}${hint ? html`<small class="muted">${hint}</small>` : null}</label>`;
}

// JSON shown as text, indented.
export function Json({ value }) {
  return html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
}

// A uPlot chart. data: [xs (unix seconds), ...ys]; series: [{ label }] for each y.
export function Chart({ data, series, height = 220, title }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const width = Math.max(320, box.current.clientWidth || 600);
    const opts = {
      title, width, height,
      series: [{}, ...series.map((s, i) => ({ stroke: PALETTE[i % PALETTE.length], width: 2, ...s }))],
      // One point has no width: show the minute around it rather than years.
      scales: { x: { time: true, range: (u, min, max) => (max - min < 1 ? [min - 60, max + 1] : [min, max]) } },
      axes: [{}, { size: 60 }],
    };
    plot.current = new uPlot(opts, data, box.current);
    return () => plot.current.destroy();
  }, [series.map((s) => s.label).join("|"), height, title]);
  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  }, [data]);
  return html`<div class="chart" ref=${box}></div>`;
}

export const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

export function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

export function fmtMs(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return "—";
  return ms < 10 ? `${Number(ms).toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

// Forward-only page tokens kept as a stack, so "Previous" can go back.
export function usePages() {
  const [tokens, setTokens] = useState([""]);
  return {
    token: tokens[tokens.length - 1],
    page: tokens.length,
    next: (t) => setTokens([...tokens, t]),
    prev: () => setTokens(tokens.slice(0, -1)),
    reset: () => setTokens([""]),
  };
}

// Previous / Page n / Next over usePages(); `next` is the listing's nextPageToken.
export function Pager({ pages, next }) {
  return html`<div class="row pager">
    <button class="secondary" disabled=${pages.page === 1} onClick=${pages.prev}>Previous</button>
    <span class="muted">Page ${pages.page}</span>
    <button class="secondary" disabled=${!next} onClick=${() => pages.next(next)}>Next</button>
  </div>`;
}

// A number typed into a form field; undefined when it is left empty.
export const fieldNumber = (text) => (String(text).trim() === "" ? undefined : Number(text));
