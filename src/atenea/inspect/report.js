"use strict";
// atenea attention report: renders the panels described by the JSON in #atenea-data.
// Every token reaches the page through textContent or canvas text, never as markup.

const DATA = JSON.parse(document.getElementById("atenea-data").textContent);
const state = { layer: DATA.initial.layer, head: DATA.initial.head }; // head -1: mean of heads

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

function heatmap(container, panel, matrix, title) {
  container.replaceChildren();
  const n = matrix.length, cell = Math.max(6, Math.min(30, Math.floor(520 / Math.max(n, 1))));
  const tokens = panel.tokens, label = 100, axis = 80;
  const canvas = el("canvas", { class: "map" });
  const masked = panel.causal ? (i, j) => j > i : null;
  const body = document.createElement("canvas");
  paint(body, matrix, cell, masked);
  canvas.width = label + body.width; canvas.height = axis + body.height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(body, label, axis);
  ctx.fillStyle = "#222"; ctx.font = `${Math.min(13, cell)}px sans-serif`;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  tokens.forEach((t, i) => ctx.fillText(t.slice(0, 14), label - 4, axis + i * cell + cell / 2));
  tokens.forEach((t, j) => {
    ctx.save(); ctx.translate(label + j * cell + cell / 2, axis - 4); ctx.rotate(-Math.PI / 3);
    ctx.textAlign = "left"; ctx.fillText(t.slice(0, 14), 0, 0); ctx.restore();
  });
  const tip = el("div", { class: "tip" }, "\u00a0");
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect();
    const j = Math.floor((e.clientX - r.left - label) / cell), i = Math.floor((e.clientY - r.top - axis) / cell);
    tip.textContent = (i >= 0 && j >= 0 && i < n && j < n)
      ? `${tokens[i]} \u2192 ${tokens[j]}: ${matrix[i][j].toFixed(3)}` : "\u00a0";
  });
  container.append(el("div", { class: "caption" }, title), canvas, tip);
}

function headView(container, panel, matrix) {
  container.replaceChildren();
  const tokens = panel.tokens, n = tokens.length, step = 20, width = 420;
  const view = svg("svg", { width, height: n * step + 10, class: "lines" });
  const lines = [];
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    const w = matrix[i][j];
    if (w < 0.01) continue;
    const line = svg("line", { x1: 150, y1: i * step + 14, x2: 270, y2: j * step + 14,
                               "stroke-width": 2, "stroke-opacity": Math.min(1, w * 1.5) });
    line.dataset.from = i; line.dataset.to = j;
    lines.push(line); view.append(line);
  }
  const show = (side, index) => lines.forEach((l) => l.classList.toggle("dim",
    index !== null && Number(l.dataset[side]) !== index));
  tokens.forEach((t, i) => {
    for (const [x, anchor, side] of [[140, "end", "from"], [280, "start", "to"]]) {
      const label = svg("text", { x, y: i * step + 18, "text-anchor": anchor, class: "token" });
      label.textContent = t;
      if (panel.focus === i) label.classList.add("focus");
      label.addEventListener("mouseenter", () => { show(side, i); label.classList.add("hover"); });
      label.addEventListener("mouseleave", () => { show(side, null); label.classList.remove("hover"); });
      view.append(label);
    }
  });
  container.append(el("div", { class: "caption" }, "hover a token: its attention (left: query, right: key)"), view);
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
      const matrix = panel.maps[li][hi];
      paint(thumb, matrix, Math.max(1, Math.floor(48 / matrix.length)), null);
      thumb.addEventListener("click", () => select(li, hi));
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
    [`L${d.layer} H${d.head}`, d.text, d.entropy.toFixed(2), d.mean_distance.toFixed(1),
     d.self_share.toFixed(2), d.previous_share.toFixed(2), d.next_share.toFixed(2),
     d.special_share.toFixed(2)].forEach((v) => row.append(el("td", {}, v)));
    row.addEventListener("click", () => select(d.layer_index, d.head_index));
    table.append(row);
  });
  container.append(table);
}

function render(panel, root) {
  root.querySelector(".text").textContent = panel.text;
  root.querySelector(".notice").textContent = panel.notice || "";
  const focus = root.querySelector(".focus");
  focus.replaceChildren(...panel.summary.map((line) => el("li", {}, line)));
  modelView(root.querySelector(".model-view"), panel);
  heatmap(root.querySelector(".rollout"), panel, panel.rollout, "rollout: each output position's attribution to the input tokens, through all layers");
  headTable(root.querySelector(".head-table"), panel);
}

function update(panel, root) {
  const matrix = matrixOf(panel, state.layer, state.head);
  const name = state.head >= 0 ? `layer ${panel.layers[state.layer]}, head ${panel.heads[state.head]}`
                               : `layer ${panel.layers[state.layer]}, mean of the heads`;
  const map = root.querySelector(".heatmap");
  map.dataset.layer = state.layer; map.dataset.head = state.head;
  heatmap(map, panel, matrix, name);
  headView(root.querySelector(".head-view"), panel, matrix);
  root.querySelectorAll("canvas.thumb").forEach((t) => t.classList.toggle("selected",
    Number(t.dataset.layer) === state.layer && Number(t.dataset.head) === state.head));
  root.querySelectorAll("table.heads tr[data-layer]").forEach((r) => r.classList.toggle("selected",
    Number(r.dataset.layer) === state.layer && Number(r.dataset.head) === state.head));
}

const roots = [];
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
  const first = DATA.panels[0];
  const layerSelect = document.getElementById("layer"), headSelect = document.getElementById("head");
  first.layers.forEach((l, i) => layerSelect.append(el("option", { value: i }, `layer ${l}`)));
  headSelect.append(el("option", { value: -1 }, "mean of heads"));
  first.heads.forEach((h, i) => headSelect.append(el("option", { value: i }, `head ${h}`)));
  layerSelect.addEventListener("change", () => select(Number(layerSelect.value), state.head));
  headSelect.addEventListener("change", () => select(state.layer, Number(headSelect.value)));
  select(state.layer, state.head);
  document.body.dataset.ready = "1";
}
main();
