"use strict";
// atenea attention report: renders the panels described by the JSON in #atenea-data.
// Every token reaches the page through textContent or canvas text, never as markup.

const DATA = JSON.parse(document.getElementById("atenea-data").textContent);
// head -1: mean of heads; kind: "encoder" | "decoder" | "cross" for encoder-decoder models
const state = { layer: DATA.initial.layer, head: DATA.initial.head, kind: DATA.initial.kind || null };

// The maps on show: the panel itself (encoder and decoder models: square maps, one token list),
// or one of its kinds (encoder-decoder models). A view's rows are `tokens`; its columns are
// `key_tokens` when they differ (cross-attention: target rows x source columns).
function viewOf(panel) { return panel.kinds ? panel.kinds[state.kind] : panel; }
function keyTokens(view) { return view.key_tokens || view.tokens; }
function fixed(value, digits) { return value === null || value === undefined ? "\u2013" : value.toFixed(digits); }

// A token among the report's own text, between U+2068 FSI and U+2069 PDI: a right-to-left token
// or one holding a direction override (U+202E) keeps its direction inside and cannot reorder the
// arrow and the number around it.
function iso(text) { return `\u2068${text}\u2069`; }
// Cut by user-perceived characters (an emoji, a letter and its accent stay whole; slice() would
// split a surrogate pair).
const SEGMENTER = typeof Intl.Segmenter === "function" ? new Intl.Segmenter() : null;
function characters(text) {
  return SEGMENTER ? Array.from(SEGMENTER.segment(text), (s) => s.segment) : Array.from(text);
}
// The first `count` characters of `text`, "…" marking a cut (inside the isolate: the ellipsis
// follows the token's own direction).
function shortened(text, count) {
  const chars = characters(text);
  return chars.length <= count ? text : iso(chars.slice(0, count - 1).join("") + "\u2026");
}
// Activate `node` by click, Enter or Space, and let the keyboard reach it.
function pressable(node, action) {
  node.setAttribute("tabindex", "0"); node.setAttribute("role", "button");
  node.addEventListener("click", action);
  node.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); action(); }
  });
}

// Viridis, sampled at 9 stops and interpolated.
const STOPS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
               [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
function color(value) {
  const v = Math.max(0, Math.min(1, value)) * (STOPS.length - 1);
  const i = Math.min(Math.floor(v), STOPS.length - 2), t = v - i;
  return STOPS[i].map((c, k) => Math.round(c + t * (STOPS[i + 1][k] - c)));
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function matrixOf(panel, layer, head) {
  const heads = panel.maps[layer];
  if (head >= 0) return heads[head];
  const n = heads[0].length, m = heads[0][0].length;
  const mean = Array.from({ length: n }, () => new Array(m).fill(0));
  for (const h of heads) for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) mean[i][j] += h[i][j] / heads.length;
  return mean;
}

// Scale so that the largest weight is the brightest colour (weights of long rows are small).
function maxOf(matrix) {
  let top = 0;
  for (const row of matrix) for (const v of row) top = Math.max(top, v);
  return top || 1;
}

function paint(canvas, matrix, cell, masked) {
  const n = matrix.length, m = matrix[0].length;
  canvas.width = m * cell; canvas.height = n * cell;
  const ctx = canvas.getContext("2d"), top = maxOf(matrix);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) {
    if (masked && masked(i, j)) { ctx.fillStyle = "#e4e4e4"; }
    else { const [r, g, b] = color(matrix[i][j] / top); ctx.fillStyle = `rgb(${r},${g},${b})`; }
    ctx.fillRect(j * cell, i * cell, cell, cell);
  }
}

function heatmap(container, view, matrix, title) {
  container.replaceChildren();
  const n = matrix.length, m = matrix[0].length;
  const cell = Math.max(6, Math.min(30, Math.floor(520 / Math.max(n, m, 1))));
  const tokens = view.tokens, keys = keyTokens(view), label = 100, axis = 80;
  const canvas = el("canvas", { class: "map" });
  const masked = view.causal ? (i, j) => j > i : null;
  const body = document.createElement("canvas");
  paint(body, matrix, cell, masked);
  canvas.width = label + body.width; canvas.height = axis + body.height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(body, label, axis);
  ctx.fillStyle = "#222"; ctx.font = `${Math.min(13, cell)}px sans-serif`;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  tokens.forEach((t, i) => ctx.fillText(shortened(t, 14), label - 4, axis + i * cell + cell / 2));
  keys.forEach((t, j) => {
    ctx.save(); ctx.translate(label + j * cell + cell / 2, axis - 4); ctx.rotate(-Math.PI / 3);
    ctx.textAlign = "left"; ctx.fillText(shortened(t, 14), 0, 0); ctx.restore();
  });
  const tip = el("div", { class: "tip" }, "\u00a0");
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect();
    const j = Math.floor((e.clientX - r.left - label) / cell), i = Math.floor((e.clientY - r.top - axis) / cell);
    tip.textContent = (i >= 0 && j >= 0 && i < n && j < m)
      ? `${iso(tokens[i])} \u2192 ${iso(keys[j])}: ${matrix[i][j].toFixed(3)}` : "\u00a0";
  });
  container.append(el("div", { class: "caption" }, title), canvas, tip);
}

function headView(container, panel, matrix) {
  container.replaceChildren();
  const tokens = panel.tokens, keys = keyTokens(panel), n = tokens.length, m = keys.length;
  const step = 20, width = 420, room = 134; // a label's room: 140 px to the lines, a margin
  const view = svg("svg", { width, height: Math.max(n, m) * step + 10, class: "lines" });
  const lines = [];
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) {
    const w = matrix[i][j];
    if (w < 0.01) continue;
    const line = svg("line", { x1: 150, y1: i * step + 14, x2: 270, y2: j * step + 14,
                               "stroke-width": 2, "stroke-opacity": Math.min(1, w * 1.5) });
    line.dataset.from = i; line.dataset.to = j;
    lines.push(line); view.append(line);
  }
  const show = (side, index) => lines.forEach((l) => l.classList.toggle("dim",
    index !== null && Number(l.dataset[side]) !== index));
  const labels = [];
  for (const [list, x, anchor, side] of [[tokens, 140, "end", "from"], [keys, 280, "start", "to"]]) {
    list.forEach((t, i) => {
      // the label in a group with the whole token as its <title>: shown on hover when cut
      const group = svg("g"), title = svg("title");
      const label = svg("text", { x, y: i * step + 18, "text-anchor": anchor, class: "token" });
      title.textContent = t; label.textContent = t;
      if (panel.focus === i) label.classList.add("focus");
      label.addEventListener("mouseenter", () => { show(side, i); label.classList.add("hover"); });
      label.addEventListener("mouseleave", () => { show(side, null); label.classList.remove("hover"); });
      group.append(title, label); view.append(group); labels.push([label, t]);
    });
  }
  container.append(el("div", { class: "caption" }, "hover a token: its attention (left: query, right: key)"), view);
  // Measured once on the page: a label wider than its room is cut (the fewest characters cut,
  // by bisection), else it would run past the SVG's edge or into the lines.
  for (const [label, t] of labels) {
    if (label.getComputedTextLength() <= room) continue;
    let fits = 1, over = characters(t).length;
    while (over - fits > 1) {
      const mid = Math.floor((fits + over) / 2);
      label.textContent = shortened(t, mid);
      if (label.getComputedTextLength() <= room) fits = mid; else over = mid;
    }
    label.textContent = shortened(t, fits);
  }
}

function modelView(container, panel) {
  container.replaceChildren();
  const grid = el("div", { class: "grid" });
  grid.style.gridTemplateColumns = `3.2em repeat(${panel.heads.length}, auto)`;
  grid.append(el("span"));
  panel.heads.forEach((h) => grid.append(el("span", { class: "axis" }, `H${h}`)));
  panel.layers.forEach((layer, li) => {
    grid.append(el("span", { class: "axis" }, `L${layer}`));
    panel.heads.forEach((head, hi) => {
      const thumb = el("canvas", { class: "thumb", title: `layer ${layer}, head ${head}`,
                                   "data-layer": li, "data-head": hi });
      const matrix = panel.maps[li][hi], n = matrix.length, m = matrix[0].length;
      paint(thumb, matrix, Math.max(1, Math.floor(48 / Math.max(n, m))), null);
      if (n !== m) { // keep the map's shape: the longer side is 48px
        thumb.style.width = `${Math.round(48 * m / Math.max(n, m))}px`;
        thumb.style.height = `${Math.round(48 * n / Math.max(n, m))}px`;
      }
      pressable(thumb, () => select(li, hi));
      grid.append(thumb);
    });
  });
  container.append(grid);
}

function headTable(container, panel) {
  container.replaceChildren();
  const table = el("table", { class: "heads" });
  const header = el("tr");
  ["head", "what it does", "entropy", "distance", "self", "prev", "next", "special"].forEach((h) => header.append(el("th", {}, h)));
  table.append(header);
  panel.descriptions.forEach((d) => {
    const row = el("tr", { "data-layer": d.layer_index, "data-head": d.head_index });
    [`L${d.layer} H${d.head}`, d.text, fixed(d.entropy, 2), fixed(d.mean_distance, 1),
     fixed(d.self_share, 2), fixed(d.previous_share, 2), fixed(d.next_share, 2),
     fixed(d.special_share, 2)].forEach((v) => row.append(el("td", {}, v)));
    pressable(row, () => select(d.layer_index, d.head_index));
    table.append(row);
  });
  container.append(table);
}

function render(panel, root) {
  root.querySelector(".text").textContent = panel.text;
  root.querySelector(".notice").textContent = panel.notice || "";
  const focus = root.querySelector(".focus");
  focus.lang = DATA.lang || "en"; // the summary is in the language of --lang, the page in English
  focus.replaceChildren(...panel.summary.map((line) => el("li", {}, line)));
  root.querySelector(".rollout-heading").textContent = panel.rollout_heading || "Rollout";
  heatmap(root.querySelector(".rollout"), panel, panel.rollout, panel.rollout_caption || "rollout: each output position's attribution to the input tokens, through all layers");
}

function update(panel, root) {
  const view = viewOf(panel);
  if (root.dataset.kind !== String(state.kind)) { // the views that depend on the kind only
    root.dataset.kind = String(state.kind);
    modelView(root.querySelector(".model-view"), view);
    headTable(root.querySelector(".head-table"), view);
  }
  const matrix = matrixOf(view, state.layer, state.head);
  const kind = view.name ? `${view.name}: ` : "";
  const name = state.head >= 0 ? `${kind}layer ${view.layers[state.layer]}, head ${view.heads[state.head]}`
                               : `${kind}layer ${view.layers[state.layer]}, mean of the heads`;
  const map = root.querySelector(".heatmap");
  map.dataset.layer = state.layer; map.dataset.head = state.head; map.dataset.kind = String(state.kind);
  heatmap(map, view, matrix, name);
  headView(root.querySelector(".head-view"), view, matrix);
  root.querySelectorAll("canvas.thumb").forEach((t) => t.classList.toggle("selected",
    Number(t.dataset.layer) === state.layer && Number(t.dataset.head) === state.head));
  root.querySelectorAll("table.heads tr[data-layer]").forEach((r) => r.classList.toggle("selected",
    Number(r.dataset.layer) === state.layer && Number(r.dataset.head) === state.head));
}

const roots = [];
function fillSelects() {
  const view = viewOf(DATA.panels[0]);
  const layerSelect = document.getElementById("layer"), headSelect = document.getElementById("head");
  layerSelect.replaceChildren(); headSelect.replaceChildren();
  view.layers.forEach((l, i) => layerSelect.append(el("option", { value: i }, `layer ${l}`)));
  headSelect.append(el("option", { value: -1 }, "mean of heads"));
  view.heads.forEach((h, i) => headSelect.append(el("option", { value: i }, `head ${h}`)));
}

function select(layer, head) {
  state.layer = layer; state.head = head;
  document.getElementById("layer").value = layer;
  document.getElementById("head").value = head;
  DATA.panels.forEach((panel, i) => update(panel, roots[i]));
}

function main() {
  document.getElementById("model").textContent = DATA.model;
  const template = document.getElementById("panel-template");
  const container = document.getElementById("panels");
  container.classList.toggle("compare", DATA.panels.length > 1);
  DATA.panels.forEach((panel) => {
    const root = template.content.firstElementChild.cloneNode(true);
    container.append(root); roots.push(root); render(panel, root);
  });
  const layerSelect = document.getElementById("layer"), headSelect = document.getElementById("head");
  fillSelects();
  layerSelect.addEventListener("change", () => select(Number(layerSelect.value), state.head));
  headSelect.addEventListener("change", () => select(state.layer, Number(headSelect.value)));
  const first = DATA.panels[0];
  if (first.kinds) { // encoder-decoder: choose the attention kind
    const kindSelect = document.getElementById("kind");
    Object.entries(first.kinds).forEach(([k, v]) => kindSelect.append(el("option", { value: k }, v.name)));
    kindSelect.value = state.kind;
    document.getElementById("kind-label").hidden = false;
    kindSelect.addEventListener("change", () => {
      state.kind = kindSelect.value;
      // the encoder and the decoder may have different numbers of layers
      const layers = viewOf(first).layers.length;
      fillSelects();
      select(Math.min(state.layer, layers - 1), state.head);
    });
  }
  select(state.layer, state.head);
  document.body.dataset.ready = "1";
}
main();
