// The editor's canvas: Drawflow (vendored) draws the nodes and edges and does
// the pan, zoom, drag, connect and delete; this component keeps it in step
// with the document. A change made on the canvas (a connection, a move, a
// deletion) becomes a new document through onChange; any other new document
// (undo, a form edit, an import) redraws the canvas from scratch, keeping the
// zoom and pan. Node content is built from escaped text only.

import Drawflow from "../vendor/drawflow.js";
import { html, useEffect, useRef } from "../ui.js";
import { addEdge, branchesOf, hasInput, moveNode, removeEdge, removeNode } from "./model.js";

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function content(node) {
  const title = node.title || node.id;
  return `<div class="wf-node-head"><span class="wf-node-title">${esc(title)}</span>`
    + `<span class="wf-node-type">${esc(node.type)}</span></div>`
    + (node.title ? `<div class="wf-node-id">${esc(node.id)}</div>` : "")
    + `<div class="wf-node-note"></div>`;
}

// props: doc, types, problems ({node: [..]}), status ({node: {state, note}}),
// selected (node id), readOnly, onChange(doc), onSelect(id or null), onDrop(type, {x, y})
export function Canvas(props) {
  const box = useRef(null);
  const flow = useRef(null);
  const ids = useRef({ toFlow: {}, toNode: {} }); // node id <-> Drawflow's numeric id
  const drawn = useRef(null); // the document the canvas shows
  const drawnShape = useRef(""); // and what of it is drawn (shapeOf)
  const live = useRef(props); // the latest props, for Drawflow's callbacks
  live.current = props;
  const pending = useRef(null); // canvas changes of one gesture, committed together

  const change = (fn) => {
    const base = pending.current || drawn.current;
    pending.current = fn(base);
    queueMicrotask(() => {
      if (!pending.current) return;
      drawn.current = pending.current;
      drawnShape.current = shapeOf(drawn.current, live.current.types);
      pending.current = null;
      live.current.onChange(drawn.current);
    });
  };

  useEffect(() => {
    const editor = new Drawflow(box.current);
    editor.reroute = false;
    editor.zoom_min = 0.3;
    editor.zoom_max = 2;
    editor.start();
    flow.current = editor;
    let muted = false;
    editor.muted = (fn) => {
      muted = true;
      try {
        fn();
      } finally {
        muted = false;
      }
    };
    const nodeOf = (flowId) => ids.current.toNode[String(flowId)];
    const edgeOf = (c) => {
      const from = nodeOf(c.output_id);
      const source = drawn.current.nodes.find((n) => n.id === from);
      const port = Number(String(c.output_class).replace("output_", "")) - 1;
      const branch = source ? branchesOf(source, live.current.types)[port] : "";
      return { from, to: nodeOf(c.input_id), branch: branch || "" };
    };
    editor.on("connectionCreated", (c) => {
      if (muted) return;
      if (live.current.readOnly) return;
      change((doc) => addEdge(doc, edgeOf(c)));
    });
    editor.on("connectionRemoved", (c) => {
      if (!muted) change((doc) => removeEdge(doc, edgeOf(c)));
    });
    editor.on("nodeRemoved", (flowId) => {
      if (muted) return;
      const id = nodeOf(flowId);
      change((doc) => removeNode(doc, id));
      if (live.current.selected === id) live.current.onSelect(null);
    });
    editor.on("nodeMoved", (flowId) => {
      const n = editor.getNodeFromId(flowId);
      const id = nodeOf(flowId);
      const was = drawn.current.nodes.find((x) => x.id === id);
      if (!was || (was.position && was.position.x === Math.round(n.pos_x) && was.position.y === Math.round(n.pos_y))) return;
      change((doc) => moveNode(doc, id, n.pos_x, n.pos_y));
    });
    editor.on("nodeSelected", (flowId) => live.current.onSelect(nodeOf(flowId)));
    editor.on("nodeUnselected", () => live.current.onSelect(null));
    // Read-only, Drawflow selects nothing: a click still picks a node to inspect.
    box.current.addEventListener("click", (e) => {
      if (!live.current.readOnly) return;
      const el = e.target.closest(".drawflow-node");
      live.current.onSelect(el ? el.dataset.node : null);
    });
    return () => {
      editor.clear();
      box.current && box.current.replaceChildren();
    };
  }, []);

  // A document that did not come from the canvas: redraw it.
  useEffect(() => {
    const editor = flow.current;
    editor.editor_mode = props.readOnly ? "fixed" : "edit";
    if (drawn.current === props.doc) return;
    const first = drawn.current === null;
    drawn.current = props.doc;
    // A change the canvas does not show (a config value, say) redraws nothing.
    const shape = shapeOf(props.doc, props.types);
    if (shape === drawnShape.current) return;
    drawnShape.current = shape;
    editor.muted(() => draw(editor, props.doc, props.types, ids.current));
    if (first) fit(editor, box.current);
  }, [props.doc, props.types, props.readOnly]);

  // Problems, run status and the selection are classes on the drawn nodes.
  useEffect(() => {
    const editor = flow.current;
    if (!props.selected && editor.node_selected) {
      // Cleared outside the canvas (Escape, a deleted node): Drawflow's too.
      editor.node_selected.classList.remove("selected");
      editor.node_selected = null;
    }
    for (const [id, flowId] of Object.entries(ids.current.toFlow)) {
      const el = box.current.querySelector(`#node-${flowId}`);
      if (!el) continue;
      const st = (props.status || {})[id];
      const problems = (props.problems || {})[id] || [];
      el.classList.toggle("has-problem", problems.length > 0);
      el.classList.toggle("is-selected", props.selected === id);
      for (const s of ["running", "succeeded", "failed", "skipped"]) el.classList.toggle(`st-${s}`, Boolean(st) && st.state === s);
      el.title = problems.map((p) => p.message).join("\n");
      const note = el.querySelector(".wf-node-note");
      if (note) note.textContent = st ? st.note || st.state : problems.length ? `${problems.length} problem${problems.length > 1 ? "s" : ""}` : "";
    }
  });

  const drop = (e) => {
    e.preventDefault();
    const type = e.dataTransfer.getData("application/x-infergate-node");
    if (!type || props.readOnly) return;
    const editor = flow.current;
    const rect = editor.precanvas.getBoundingClientRect();
    props.onDrop(type, { x: (e.clientX - rect.x) / editor.zoom, y: (e.clientY - rect.y) / editor.zoom });
  };

  return html`<div class="wf-canvas-wrap">
    <div id="wf-canvas" class="wf-canvas" ref=${box} onDragOver=${(e) => e.preventDefault()} onDrop=${drop}></div>
    <div class="wf-zoom">
      <button type="button" class="secondary" title="Zoom in (Ctrl + wheel)" onClick=${() => flow.current.zoom_in()}>+</button>
      <button type="button" class="secondary" title="Zoom out" onClick=${() => flow.current.zoom_out()}>−</button>
      <button type="button" class="secondary" title="Reset zoom" onClick=${() => flow.current.zoom_reset()}>1:1</button>
      <button type="button" class="secondary" id="wf-fit" title="Fit the workflow in view" onClick=${() => fit(flow.current, box.current)}>Fit</button>
    </div>
  </div>`;
}

// What the canvas draws of a document: nodes (id, type, title, position, ports) and edges.
function shapeOf(doc, types) {
  return JSON.stringify([
    (doc.nodes || []).map((n) => [n.id, n.type, n.title || "", n.position, branchesOf(n, types)]),
    doc.edges || [],
  ]);
}

function draw(editor, doc, types, ids) {
  editor.clear();
  editor.node_selected = null; // Drawflow would delete these removed elements on Delete
  editor.connection_selected = null;
  ids.toFlow = {};
  ids.toNode = {};
  for (const node of doc.nodes || []) {
    const ports = branchesOf(node, types);
    const p = node.position || { x: 40, y: 40 };
    const flowId = editor.addNode(node.type, hasInput(node) ? 1 : 0, ports.length, p.x, p.y, `wf-type-${String(node.type).replace(/\W/g, "_")}`, {}, content(node));
    ids.toFlow[node.id] = flowId;
    ids.toNode[String(flowId)] = node.id;
    const el = editor.precanvas.querySelector(`#node-${flowId}`);
    el.dataset.node = node.id;
    ports.forEach((label, i) => {
      const out = el.querySelector(`.output_${i + 1}`);
      out.dataset.branch = label;
      if (label) out.title = `${label} branch`;
    });
  }
  const nodes = Object.fromEntries((doc.nodes || []).map((n) => [n.id, n]));
  for (const e of doc.edges || []) {
    const source = nodes[e.from];
    if (!source || !nodes[e.to] || !hasInput(nodes[e.to])) continue; // the problems list names it
    const port = branchesOf(source, types).indexOf(e.branch || "");
    if (port < 0) continue;
    editor.addConnection(ids.toFlow[e.from], ids.toFlow[e.to], `output_${port + 1}`, "input_1");
  }
}

// Zooms and pans so that every node is in view (never zooming in past 1:1).
function fit(editor, container) {
  const nodes = [...editor.precanvas.querySelectorAll(".drawflow-node")];
  if (!nodes.length) return;
  const left = Math.min(...nodes.map((n) => n.offsetLeft));
  const top = Math.min(...nodes.map((n) => n.offsetTop));
  const right = Math.max(...nodes.map((n) => n.offsetLeft + n.offsetWidth)) + 60; // room for branch labels
  const bottom = Math.max(...nodes.map((n) => n.offsetTop + n.offsetHeight));
  const pad = 24;
  const zoom = Math.max(editor.zoom_min, Math.min(1, (container.clientWidth - 2 * pad) / (right - left), (container.clientHeight - 2 * pad) / (bottom - top)));
  // Drawflow scales about the canvas's centre: place the box's top-left corner at (pad, pad).
  const cx = editor.precanvas.clientWidth / 2;
  const cy = editor.precanvas.clientHeight / 2;
  editor.zoom = zoom;
  editor.zoom_last_value = zoom;
  editor.canvas_x = pad - (cx + (left - cx) * zoom);
  editor.canvas_y = pad - (cy + (top - cy) * zoom);
  editor.precanvas.style.transform = `translate(${editor.canvas_x}px, ${editor.canvas_y}px) scale(${zoom})`;
}
