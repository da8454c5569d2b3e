"""A standalone HTML page of what a ViT looks at (``atenea explain --image``): the picture with
the attention drawn over its patches as a spotlight (the less attended, the darker). A
selector picks the rollout from [CLS], a layer's heads averaged or one head's [CLS] attention;
hovering a patch shows where *that patch* attends in the selected layer (heads averaged), the
patch outlined. One file, no network, the same content-security policy as the text report
(only this page's own script runs).

Data in the page: per head the [CLS] row over the patches (``layers x heads x N``), per layer
the heads-averaged patch-to-patch map quantised to bytes (``layers x N x N``, each row scaled
to its maximum, base64), the rollout, the top classes and the image as a PNG.
"""

from __future__ import annotations

import base64
import io

import torch

from atenea.inspect.images import ImageExplanation, head_lines
from atenea.inspect.report import _rounded, page
from atenea.inspect.tokens import isolate

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
#stage { position: relative; display: inline-block; }
#stage img, #stage canvas { width: 448px; height: 448px; display: block;
  image-rendering: pixelated; }
#stage canvas { position: absolute; left: 0; top: 0; cursor: crosshair; }
#info { margin: 8px 0; min-height: 1.4em; }
pre { background: #f6f6f6; padding: 8px; font-size: 12px; }
"""

BODY = """
<h1 id="title"></h1>
<p id="prediction"></p>
<label>show <select id="view"></select></label>
<p id="info">hover a patch: where it attends in the selected layer (heads averaged)</p>
<div id="stage"><img id="picture" alt="the image as the model saw it">
<canvas id="overlay"></canvas></div>
<h2>Heads: near or far</h2>
<pre id="heads"></pre>
"""

SCRIPT = """
"use strict";
const D = JSON.parse(document.getElementById("atenea-data").textContent);
const N = D.rows * D.cols, canvas = document.getElementById("overlay");
canvas.width = D.cols * 16; canvas.height = D.rows * 16;
const ctx = canvas.getContext("2d"), view = document.getElementById("view");
const hover = Uint8Array.from(atob(D.hover), c => c.charCodeAt(0));
document.getElementById("title").textContent = D.title;
document.getElementById("prediction").textContent = D.prediction;
document.getElementById("heads").textContent = D.heads.join("\\n");
document.getElementById("picture").src = "data:image/png;base64," + D.image;
function option(value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text; view.appendChild(o);
}
option("rollout", "rollout from [CLS]");
for (let l = 0; l < D.layers; l++) {
  option("L" + l, "layer " + l + ": [CLS], heads averaged");
  for (let h = 0; h < D.heads_per_layer; h++) {
    option("L" + l + "H" + h, "layer " + l + " head " + h + ": [CLS]");
  }
}
function draw(values, outline) {
  const top = Math.max(...values, 1e-12);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  values.forEach((v, i) => {
    // a spotlight: the less a patch is attended, the darker (visible on any picture)
    ctx.fillStyle = "rgba(0,0,0," + (0.85 * (1 - Math.sqrt(v / top))).toFixed(3) + ")";
    ctx.fillRect((i % D.cols) * 16, Math.floor(i / D.cols) * 16, 16, 16);
  });
  if (outline !== undefined) {
    ctx.strokeStyle = "#00e5ff"; ctx.lineWidth = 2;
    ctx.strokeRect((outline % D.cols) * 16 + 1, Math.floor(outline / D.cols) * 16 + 1, 14, 14);
  }
}
function layerOf(v) { return v === "rollout" ? D.layers - 1 : parseInt(v.slice(1), 10); }
function selected() {
  const v = view.value;
  if (v === "rollout") return D.rollout;
  const l = layerOf(v), h = v.indexOf("H");
  if (h >= 0) return D.cls[l][parseInt(v.slice(h + 1), 10)];
  return D.cls[l][0].map((_, i) => D.cls[l].reduce((s, row) => s + row[i], 0) / D.heads_per_layer);
}
view.addEventListener("change", () => draw(selected()));
canvas.addEventListener("mousemove", e => {
  const r = canvas.getBoundingClientRect();
  const col = Math.min(D.cols - 1, Math.floor((e.clientX - r.left) / r.width * D.cols));
  const row = Math.min(D.rows - 1, Math.floor((e.clientY - r.top) / r.height * D.rows));
  const p = row * D.cols + col, l = layerOf(view.value), start = (l * N + p) * N;
  draw(Array.from(hover.subarray(start, start + N)), p);
  canvas.dataset.patch = String(p);
  document.getElementById("info").textContent = "patch row " + row + ", col " + col +
    ": where it attends in layer " + l + " (heads averaged)";
});
canvas.addEventListener("mouseleave", () => { delete canvas.dataset.patch; draw(selected()); });
draw(selected());
document.body.dataset.ready = "1";
"""


def _png_base64(image: torch.Tensor) -> str:
    """``image (C, H, W)`` in [0, 1] as a base64 PNG (Pillow)."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def image_report_data(e: ImageExplanation, title: str) -> dict:
    """What the page draws (see the module's docstring)."""
    layers, heads = e.maps.shape[:2]
    patches = e.maps[:, :, 1:, 1:].mean(1)  # (layers, N, N): heads averaged, patch -> patch
    scaled = patches / patches.amax(-1, keepdim=True).clamp(min=1e-12)
    quantised = (scaled * 255).round().to(torch.uint8).contiguous().numpy().tobytes()
    prediction = (
        # a class name isolated: a right-to-left one cannot move its percentage
        "prediction: " + ", ".join(f"{isolate(label)} {p:.1%}" for label, p in e.top)
        if e.top
        else "no classifier head: the encoder's attention only"
    )
    return {
        "title": title,
        "prediction": prediction,
        "rows": e.grid[0],
        "cols": e.grid[1],
        "layers": layers,
        "heads_per_layer": heads,
        "cls": _rounded(e.cls_maps.flatten(2)),
        "rollout": _rounded(e.rollout.flatten()),
        "hover": base64.b64encode(quantised).decode(),
        "heads": head_lines(e),
        "image": _png_base64(e.image),
    }


def render_image_html(data: dict) -> str:
    """The whole page for ``data`` (``image_report_data``)."""
    return page(data, data["title"], style=STYLE, body=BODY, script=SCRIPT)
