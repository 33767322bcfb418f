// A form generated from a JSON Schema (a node type's config schema): strings,
// enums, numbers, booleans, lists, nested objects and name -> value maps get
// fields of their own; anything else (free JSON such as a filter or a schema)
// a JSON box. Template strings offer the upstream nodes' outputs as you type
// `{{`. Each field shows the validation problems whose path it owns.

import { html, useRef, useState } from "../ui.js";
import { freshName } from "./model.js";

const kindOf = (schema) => {
  if (!schema || typeof schema !== "object") return "json";
  if (schema.enum) return "enum";
  const t = Array.isArray(schema.type) ? (schema.type.length === 1 ? schema.type[0] : "json") : schema.type;
  if (t === "object" && !schema.properties && schema.additionalProperties && schema.additionalProperties.type === "string") return "map";
  if (t === "object" && !schema.properties) return "json";
  if (t === "array" && (!schema.items || !["string", "object"].includes(schema.items.type) || (schema.items.type === "object" && !schema.items.properties))) return "json";
  return t || "json";
};

const isTemplate = (name, schema) => /template|CEL|Jinja/i.test((schema && schema.description) || "") || ["content", "text", "query", "input", "variable", "sources"].includes(name);

// props: schema, value, onChange(value), problems ([{field, message}], each
// field relative to this form's value: "messages[0].content"), suggest (["node.field"]),
// lists ({ model: [...aliases], collections: [...] }) for datalists.
export function SchemaForm({ schema, value, onChange, problems = [], suggest = [], lists = {} }) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const v = value || {};
  const set = (name, x) => {
    const next = { ...v };
    if (x === undefined || (x === "" && !required.has(name))) delete next[name];
    else next[name] = x;
    onChange(next);
  };
  return html`<div class="wf-form">
    ${Object.entries(props).map(([name, sub]) => html`<${Property} key=${name} name=${name} schema=${sub}
      required=${required.has(name)} value=${v[name]} onChange=${(x) => set(name, x)} path=${name}
      problems=${problems} suggest=${suggest} lists=${lists} />`)}
  </div>`;
}

const own = (problems, path) => problems.filter((p) => p.field === path);
const under = (problems, path) => problems.filter((p) => p.field.startsWith(`${path}.`))
  .map((p) => ({ ...p, field: p.field.slice(path.length + 1) }));

function Property({ name, schema, required, value, onChange, path, problems, suggest, lists }) {
  const kind = kindOf(schema);
  const label = html`<span>${name}${required ? html`<b class="req" title="required"> *</b>` : null}</span>`;
  const hint = schema.description ? html`<small class="muted">${schema.description}</small>` : null;
  const errors = own(problems, path).map((p) => html`<small class="wf-problem" role="alert">${p.message}</small>`);
  let input;
  switch (kind) {
    case "string":
      input = isTemplate(name, schema)
        ? html`<${TemplateInput} value=${value ?? ""} onChange=${onChange} suggest=${suggest} name=${path} />`
        : html`<input data-field=${path} value=${value ?? ""} list=${lists[name] ? `wf-list-${name}` : undefined}
                 onInput=${(e) => onChange(e.target.value)} />`;
      break;
    case "enum":
      input = html`<select data-field=${path} value=${value ?? ""} onChange=${(e) => onChange(e.target.value === "" ? undefined : e.target.value)}>
        ${required ? null : html`<option value="">(default${schema.default !== undefined ? `: ${schema.default}` : ""})</option>`}
        ${schema.enum.map((x) => html`<option value=${x}>${x}</option>`)}
      </select>`;
      break;
    case "number":
    case "integer":
      input = html`<input data-field=${path} type="number" step=${kind === "integer" ? 1 : "any"} value=${value ?? ""}
        placeholder=${schema.default ?? ""} onInput=${(e) => onChange(e.target.value === "" ? undefined : Number(e.target.value))} />`;
      break;
    case "boolean":
      return html`<label class="wf-check"><input data-field=${path} type="checkbox" checked=${value ?? schema.default ?? false}
        onChange=${(e) => onChange(e.target.checked)} /> ${name} ${hint}${errors}</label>`;
    case "array":
      input = html`<${List} schema=${schema} value=${Array.isArray(value) ? value : []} onChange=${onChange} path=${path}
        problems=${problems} suggest=${suggest} lists=${lists} name=${name} />`;
      break;
    case "object":
      return html`<fieldset class="wf-fieldset"><legend>${name}</legend>${hint}
        <${SchemaForm} schema=${schema} value=${value} onChange=${(x) => onChange(Object.keys(x).length ? x : undefined)}
          problems=${under(problems, path)}
          suggest=${suggest} lists=${lists} />${errors}</fieldset>`;
    case "map":
      input = html`<${KeyValues} value=${value || {}} onChange=${onChange} suggest=${suggest} path=${path} />`;
      break;
    default:
      input = html`<${JsonInput} value=${value} onChange=${onChange} path=${path} />`;
  }
  return html`<label class="field">${label}${input}${hint}${errors}</label>`;
}

function List({ schema, value, onChange, path, problems, suggest, lists, name }) {
  const items = schema.items || {};
  const set = (i, x) => onChange(value.map((old, j) => (j === i ? x : old)));
  const add = () => onChange([...value, items.type === "object" ? {} : ""]);
  const remove = (i) => onChange(value.filter((_, j) => j !== i));
  return html`<div class="wf-list" data-field=${path}>
    ${value.map((item, i) => {
      const at = `${path}[${i}]`;
      const sub = under(problems, at);
      return html`<div class="wf-list-item" key=${i}>
        ${items.type === "object"
          ? html`<${SchemaForm} schema=${items} value=${item} onChange=${(x) => set(i, x)} problems=${sub} suggest=${suggest} lists=${lists} />`
          : isTemplate(name, items)
            ? html`<${TemplateInput} value=${item} onChange=${(x) => set(i, x)} suggest=${suggest} name=${at} />`
            : html`<input data-field=${at} value=${item} list=${lists[name] ? `wf-list-${name}` : undefined} onInput=${(e) => set(i, e.target.value)} />`}
        ${own(problems, at).map((p) => html`<small class="wf-problem" role="alert">${p.message}</small>`)}
        <button type="button" class="link bad" title="Remove" onClick=${() => remove(i)}>Remove</button>
      </div>`;
    })}
    <button type="button" class="link" onClick=${add}>+ Add</button>
  </div>`;
}

function KeyValues({ value, onChange, suggest, path }) {
  const rows = Object.entries(value);
  const write = (pairs) => onChange(pairs.length ? Object.fromEntries(pairs) : undefined);
  return html`<div class="wf-list" data-field=${path}>
    ${rows.map(([k, x], i) => html`<div class="wf-kv" key=${i}>
      <input value=${k} placeholder="name" onChange=${(e) => {
        if (rows.some(([n], j) => j !== i && n === e.target.value)) e.target.value = k; // taken: keep the old name
        else write(rows.map((r, j) => (j === i ? [e.target.value, r[1]] : r)));
      }} />
      <${TemplateInput} value=${x} onChange=${(y) => write(rows.map((r, j) => (j === i ? [r[0], y] : r)))} suggest=${suggest} name=${`${path}.${k}`} rows=${1} />
      <button type="button" class="link bad" onClick=${() => write(rows.filter((_, j) => j !== i))}>Remove</button>
    </div>`)}
    <button type="button" class="link" onClick=${() => write([...rows, [freshName(rows.map(([n]) => n), "name"), ""]])}>+ Add</button>
  </div>`;
}

// Free JSON: kept as text while it does not parse (the error shows), written
// back when it does.
function JsonInput({ value, onChange, path }) {
  const shown = value === undefined ? "" : JSON.stringify(value, null, 2);
  const [text, setText] = useState(shown);
  const [error, setError] = useState("");
  const last = useRef(shown);
  if (shown !== last.current) {
    last.current = shown;
    if (!error) setText(shown);
  }
  const edit = (t) => {
    setText(t);
    if (!t.trim()) {
      setError("");
      onChange(undefined);
      return;
    }
    try {
      const parsed = JSON.parse(t);
      setError("");
      last.current = JSON.stringify(parsed, null, 2);
      onChange(parsed);
    } catch (e) {
      setError(`not JSON yet: ${e.message}`);
    }
  };
  return html`<div>
    <textarea data-field=${path} class="wf-json" rows="4" value=${text} onInput=${(e) => edit(e.target.value)}></textarea>
    ${error ? html`<small class="muted">${error}</small>` : null}
  </div>`;
}

// A template box: typing `{{` (and a prefix) lists what upstream nodes produce;
// Enter or Tab or a click inserts it, Escape closes the list.
export function TemplateInput({ value, onChange, suggest, name, rows = 2 }) {
  const box = useRef(null);
  const [open, setOpen] = useState(null); // { prefix, at, items, active }
  const look = (text, caret) => {
    const m = /\{\{-?\s*([A-Za-z0-9_.]*)$/.exec(text.slice(0, caret));
    if (!m) return setOpen(null);
    const items = suggest.filter((s) => s.startsWith(m[1])).slice(0, 12);
    setOpen(items.length ? { prefix: m[1], at: caret - m[1].length, items, active: 0 } : null);
  };
  const pick = (item) => {
    const el = box.current;
    const caret = el.selectionStart;
    const after = value.slice(caret);
    const close = /^\s*\}\}/.test(after) ? "" : " }}";
    const text = value.slice(0, open.at) + item + close + after;
    onChange(text);
    setOpen(null);
    const pos = open.at + item.length + close.length;
    requestAnimationFrame(() => {
      el.focus();
      el.setSelectionRange(pos, pos);
    });
  };
  const key = (e) => {
    if (!open) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const n = open.items.length;
      setOpen({ ...open, active: (open.active + (e.key === "ArrowDown" ? 1 : n - 1)) % n });
    } else if (e.key === "Enter" || e.key === "Tab") {
      e.preventDefault();
      pick(open.items[open.active]);
    } else if (e.key === "Escape") {
      setOpen(null);
    }
  };
  return html`<div class="wf-template">
    <textarea ref=${box} data-field=${name} rows=${rows} value=${value}
      onInput=${(e) => { onChange(e.target.value); look(e.target.value, e.target.selectionStart); }}
      onKeyDown=${key} onBlur=${() => setTimeout(() => setOpen(null), 150)}></textarea>
    ${open ? html`<ul class="wf-suggest" role="listbox">
      ${open.items.map((s, i) => html`<li role="option" class=${i === open.active ? "active" : ""} aria-selected=${i === open.active}
        onMouseDown=${(e) => { e.preventDefault(); pick(s); }}>${s}</li>`)}
    </ul>` : null}
  </div>`;
}
