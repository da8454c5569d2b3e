"""The standalone HTML report: one file, inline CSS and JavaScript, nothing fetched.

Safety. Text from the user and the tokenizer only reaches the page as data: inside a JSON
``<script type="application/json">`` block with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped
(so no token can close the block), read with ``JSON.parse`` and put on the page with
``textContent`` or drawn on a canvas. A Content-Security-Policy allows the report's own script
(by its hash) and nothing else: no network, no inline event handlers, no injected scripts.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path

SCRIPT = (Path(__file__).with_name("report.js")).read_text(encoding="utf-8")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header { padding: 14px 24px; background: #1f2a44; color: #fff; }
header h1 { margin: 0; font-size: 20px; } header p { margin: 4px 0 0; opacity: .85; }
nav { padding: 10px 24px; background: #eef0f5; position: sticky; top: 0; z-index: 2; }
nav select { margin-right: 12px; font-size: 14px; }
#panels { display: grid; gap: 16px; padding: 16px 24px; }
#panels.compare { grid-template-columns: repeat(2, minmax(0, 1fr)); }
.panel { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 12px 16px;
         overflow-x: auto; }
.panel h2 { font-size: 17px; margin: 4px 0; } .panel h3 { font-size: 15px; margin: 18px 0 6px; }
.notice:empty { display: none; }
.notice { background: #fff4d6; padding: 6px 10px; border-radius: 4px; }
ul.focus { margin: 4px 0; padding-left: 20px; } ul.focus:empty { display: none; }
.views { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.grid { display: grid; gap: 3px; align-items: center; }
.axis { font-size: 11px; color: #666; text-align: center; }
canvas.thumb { width: 48px; height: 48px; cursor: pointer; border: 2px solid transparent;
               image-rendering: pixelated; }
canvas.thumb.selected { border-color: #e8590c; }
.caption { font-size: 12px; color: #555; margin: 2px 0 4px; }
.tip { font-size: 12px; font-family: ui-monospace, monospace; min-height: 1.4em; }
svg.lines line { stroke: #1f6feb; } svg.lines line.dim { stroke-opacity: .03; }
svg.lines text.token { font-size: 13px; cursor: default; }
svg.lines text.hover { font-weight: 700; fill: #e8590c; } svg.lines text.focus { fill: #b8002e; }
table.heads { border-collapse: collapse; font-size: 12px; }
table.heads td, table.heads th { border-bottom: 1px solid #eee; padding: 3px 6px;
                                 text-align: left; }
table.heads tr[data-layer] { cursor: pointer; } table.heads tr.selected { background: #fff0e6; }
"""

BODY = """<header><h1>Attention report</h1><p id="model"></p></header>
<nav><label id="kind-label" hidden>Attention <select id="kind"></select></label>
<label>Layer <select id="layer"></select></label>
<label>Head <select id="head"></select></label>
<span class="caption">click a thumbnail or a row of the head table to select a head</span></nav>
<main id="panels"></main>
<template id="panel-template"><section class="panel">
<h2 class="text"></h2><p class="notice"></p><ul class="focus"></ul>
<h3>Model view: every layer (row) and head (column)</h3><div class="model-view"></div>
<div class="views"><div><h3>Head view</h3><div class="head-view"></div></div>
<div><h3>Heatmap of the selected head</h3><div class="heatmap"></div></div></div>
<h3>Rollout</h3><div class="rollout"></div>
<h3>What the heads do</h3><div class="head-table"></div>
</section></template>"""


def safe_json(data) -> str:
    """JSON that can sit inside a ``<script>`` element: no ``<``, ``>`` or ``&`` anywhere (so
    ``</script>`` cannot appear), and no U+2028 / U+2029 (line breaks for old JavaScript)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, escaped)
    return text


def render_html(data: dict, title: str = "atenea attention report") -> str:
    """The whole report for ``data`` (see ``atenea.inspect.explain.report_data``)."""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode()
    policy = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        f"img-src data:; base-uri 'none'; form-action 'none'"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        f'<meta name="viewport" content="width=device-width"><title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style></head>\n<body>\n{BODY}\n"
        f'<script type="application/json" id="atenea-data">{safe_json(data)}</script>\n'
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )
