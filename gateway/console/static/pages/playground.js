// Playground: chat with any model alias. The answer streams in from
// POST /v1/generate:stream (Stop aborts it); each answer shows its tokens in
// and out, the time to the first token and in total (measured here, from send)
// and the deployment that served it. The whole conversation is sent each turn.
// "Show routing" asks POST /v1/route which deployment the same request would get.

import { api, stream } from "../api.js";
import { html, useState, useEffect, useRef, ErrorBox, Field, fmtMs, fieldNumber } from "../ui.js";
import { Decision } from "./models.js";

// One answer's numbers, as a line of text.
function Stats({ s }) {
  if (!s) return null;
  const u = s.usage || {};
  const parts = [
    `${u.inputTokens ?? "?"} tokens in · ${u.outputTokens ?? "?"} out`,
    `first token ${fmtMs(s.ttft)}`,
    `total ${fmtMs(s.total)}`,
    `served by ${s.deployment || "?"}`,
  ];
  if (s.finishReason) parts.push(`finish: ${s.finishReason}`);
  if (s.stopped) parts.push("stopped");
  return html`<span>${parts.join(" · ")}</span>`;
}

// A number field's value, or undefined when blank (the server's default applies).

export default function Playground() {
  const [models, setModels] = useState([]);
  const [model, setModel] = useState("");
  const [system, setSystem] = useState("You are a helpful assistant.");
  const [temperature, setTemperature] = useState("0.7");
  const [maxTokens, setMaxTokens] = useState("");
  const [turns, setTurns] = useState([]); // [{ role, content, stats? }]
  const [input, setInput] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [decision, setDecision] = useState(null);
  const abort = useRef(null);
  const box = useRef(null);

  useEffect(() => {
    api("GET", "/v1/router/models").then((r) => setModels(r.models || []), setError);
    return () => abort.current && abort.current.abort(); // leaving the page stops a stream
  }, []);
  useEffect(() => {
    if (box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [turns]);

  const aliases = models.map((m) => m.alias || m.name);
  const chosen = model || aliases[0] || "";

  // The GenerateRequest for the conversation so far plus `next` (a user message).
  const request = (next) => {
    const messages = [];
    if (system.trim()) messages.push({ role: "system", content: system });
    for (const t of turns) messages.push({ role: t.role, content: t.content });
    if (next) messages.push({ role: "user", content: next });
    const params = {};
    if (fieldNumber(temperature) !== undefined) params.temperature = fieldNumber(temperature);
    if (fieldNumber(maxTokens) !== undefined) params.maxTokens = fieldNumber(maxTokens);
    return { model: chosen, messages, params };
  };

  // Updates the last turn (the answer streaming in).
  const patchLast = (fn) => setTurns((ts) => [...ts.slice(0, -1), fn(ts[ts.length - 1])]);

  const send = async (e) => {
    if (e) e.preventDefault();
    const text = input;
    if (!text.trim() || busy || !chosen) return;
    const body = request(text);
    setError(null);
    setInput("");
    setTurns((ts) => [...ts, { role: "user", content: text }, { role: "assistant", content: "", stats: null }]);
    setBusy(true);
    const controller = new AbortController();
    abort.current = controller;
    const t0 = performance.now();
    const s = { ttft: null, total: null, deployment: "", usage: null, finishReason: "", stopped: false };
    let got = "";
    try {
      await stream("/v1/generate:stream", body, (chunk) => {
        if (chunk.deployment) s.deployment = chunk.deployment;
        if (chunk.usage) s.usage = chunk.usage;
        if (chunk.finishReason) s.finishReason = chunk.finishReason;
        if (chunk.delta) {
          if (s.ttft === null) s.ttft = performance.now() - t0;
          got += chunk.delta;
        }
        patchLast((t) => ({ ...t, content: got, stats: { ...s } }));
      }, controller.signal);
    } catch (err) {
      if (err.name === "AbortError") s.stopped = true;
      else setError(err);
    }
    s.total = performance.now() - t0;
    if (!got && !s.stopped) {
      // Nothing came back: drop the turn and give the text back to retry.
      setTurns((ts) => ts.slice(0, -2));
      setInput(text);
    } else {
      patchLast((t) => ({ ...t, content: got, stats: { ...s } }));
    }
    abort.current = null;
    setBusy(false);
  };

  const showRouting = async () => {
    setError(null);
    try {
      setDecision(await api("POST", "/v1/route", request(input.trim() ? input : "")));
    } catch (err) {
      setDecision(null);
      setError(err);
    }
  };

  const last = [...turns].reverse().find((t) => t.role === "assistant" && t.stats);

  return html`<section>
    <h2>Playground</h2>
    <div class="card">
      <div class="row">
        <${Field} label="Model alias">
          <select id="playground-model" value=${chosen} onChange=${(e) => setModel(e.target.value)}>
            ${aliases.map((a) => html`<option value=${a}>${a}</option>`)}
          </select>
        <//>
        <${Field} label="Temperature">
          <input id="playground-temperature" type="number" min="0" max="2" step="0.1" size="5" placeholder="default"
                 title="0 to 2; blank: the deployment's default" value=${temperature} onInput=${(e) => setTemperature(e.target.value)} />
        <//>
        <${Field} label="Max tokens">
          <input id="playground-max-tokens" type="number" min="1" step="1" size="7" placeholder="default"
                 title="blank: the deployment's default" value=${maxTokens} onInput=${(e) => setMaxTokens(e.target.value)} />
        <//>
      </div>
      <${Field} label="System prompt">
        <textarea id="playground-system" rows="2" value=${system} onInput=${(e) => setSystem(e.target.value)}></textarea>
      <//>
    </div>

    <div id="playground-transcript" class="transcript chatlog" ref=${box} aria-live="polite">
      ${turns.length === 0 ? html`<p class="muted">No messages yet.</p>` : null}
      ${turns.map((t, i) => html`<div key=${i} class=${"turn " + t.role}>
        <div class="turn-role">${t.role}</div>
        <div class="turn-text">${t.content || (busy && i === turns.length - 1 ? "…" : "")}</div>
        ${t.stats ? html`<div class="turn-stats muted"><${Stats} s=${t.stats} /></div>` : null}
      </div>`)}
    </div>

    <form class="chat-form" onSubmit=${send}>
      <textarea id="playground-input" rows="3" placeholder="Message (Enter sends, Shift+Enter: new line)"
                value=${input} onInput=${(e) => setInput(e.target.value)}
                onKeyDown=${(e) => e.key === "Enter" && !e.shiftKey && !e.isComposing && send(e)}></textarea>
      <div class="row">
        <button id="playground-send" type="submit" disabled=${busy || !input.trim() || !chosen}>Send</button>
        <button id="playground-stop" type="button" class="danger" disabled=${!busy}
                onClick=${() => abort.current && abort.current.abort()}>Stop</button>
        <button id="playground-show-route" type="button" class="secondary" disabled=${!chosen} onClick=${showRouting}>Show routing</button>
        <button id="playground-clear" type="button" class="link" disabled=${busy}
                onClick=${() => { setTurns([]); setDecision(null); }}>New conversation</button>
      </div>
    </form>
    <p id="playground-stats" class="muted">${last ? html`Last answer: <${Stats} s=${last.stats} />` : null}</p>
    <${ErrorBox} error=${error} />
    <div id="playground-route">
      ${decision ? html`<div class="card"><h3>Routing for this request</h3><${Decision} decision=${decision} /></div>` : null}
    </div>
  </section>`;
}
