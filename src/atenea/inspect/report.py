"""The standalone HTML report: the data it shows (``report_data``, JSON built from
``Explanation``s or ``Seq2SeqExplanation``s) and the page itself (``render_html``: one file,
inline CSS and JavaScript, nothing fetched).

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

import torch
from torch import Tensor

from atenea.inspect.alignment import CAPTION as ALIGNMENT_CAPTION
from atenea.inspect.alignment import AlignmentExplanation
from atenea.inspect.alignment import alignment_lines as rnn_alignment_lines
from atenea.inspect.analysis import HeadDescription
from atenea.inspect.explain import Explanation, strongest_link
from atenea.inspect.explain_lang import summary_lines
from atenea.inspect.seq2seq import Seq2SeqExplanation, alignment_lines
from atenea.inspect.tokens import isolate

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
.panel h2 { font-size: 17px; margin: 4px 0; }
/* a long unbroken token (a URL, 200 x's) wraps instead of running out of the panel */
.panel h2, ul.focus, .tip { overflow-wrap: anywhere; }
.panel h3 { font-size: 15px; margin: 18px 0 6px; }
.notice:empty { display: none; }
.notice { background: #fff4d6; padding: 6px 10px; border-radius: 4px; }
ul.focus { margin: 4px 0; padding-left: 20px; } ul.focus:empty { display: none; }
.views { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.grid { display: grid; gap: 3px; align-items: center; }
.axis { font-size: 11px; color: #666; text-align: center; }
canvas.thumb { width: 48px; height: 48px; cursor: pointer; border: 2px solid transparent;
               image-rendering: pixelated; }
canvas.thumb.selected { border-color: #e8590c; }
canvas.thumb:focus-visible, table.heads tr:focus-visible { outline: 2px solid #1f6feb; }
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
<h3 class="rollout-heading">Rollout</h3><div class="rollout"></div>
<h3>What the heads do</h3><div class="head-table"></div>
</section></template>"""


KIND_NAMES = {
    "encoder": "encoder self-attention (source x source)",
    "decoder": "decoder self-attention (target x target, causal)",
    "cross": "cross-attention (target rows x source columns)",
}
ROLLOUT_CAPTION = (
    "rollout of the encoder's self-attention only: each source position's attribution to the "
    "source tokens through the encoder's layers. Rollout assumes one sequence whose residual "
    "stream carries each token through every layer; the decoder mixes two sequences through "
    "cross-attention, so no rollout is drawn for the decoder or the cross-attention."
)


def report_data(
    explanations: list[Explanation] | list[Seq2SeqExplanation],
    model_name: str,
    layer: int | None = None,
    head: int | None = None,
    lang: str = "en",
) -> dict:
    """The JSON the HTML report renders, one panel per explanation. The first selected head:
    ``layer``/``head`` if given, else the focus token's strongest link, else the last layer's
    mean over heads (``head = -1``; of the cross-attention for encoder-decoders). ``lang``: the
    language of the summary lines (``atenea.inspect.lang``), as in the terminal.

    Every token and text of the user's or the model's that sits among the report's own words
    (summary lines, headings) is isolated (``tokens.isolate``): a right-to-left token cannot
    reorder the numbers and arrows around it."""
    first = explanations[0]
    if isinstance(first, AlignmentExplanation):  # RNNsearch: its one attention
        return {
            "model": model_name, "lang": lang,
            "initial": {"layer": 0, "head": 0 if head is None else head, "kind": "cross"},
            "panels": [alignment_panel(e) for e in explanations],
        }  # fmt: skip
    if isinstance(first, Seq2SeqExplanation):  # the cross-attention is shown first
        layer = first.cross_maps.shape[0] - 1 if layer is None else layer
        return {
            "model": model_name, "lang": lang,
            "initial": {"layer": layer, "head": -1 if head is None else head, "kind": "cross"},
            "panels": [seq2seq_panel(e) for e in explanations],
        }  # fmt: skip
    if layer is None:
        if first.focus is not None:
            layer, head, _, _ = strongest_link(first)
        else:
            layer, head = first.maps.shape[0] - 1, -1
    head = -1 if head is None else head
    return {
        "model": model_name, "lang": lang,
        "initial": {"layer": layer, "head": head},
        "panels": [explanation_panel(e, lang) for e in explanations],
    }  # fmt: skip


def explanation_panel(e: Explanation, lang: str = "en") -> dict:
    """One panel of the report for an encoder or decoder model (JSON-ready)."""
    return {
        "text": e.text, "tokens": e.cell_tokens, "causal": e.causal, "notice": e.notice,
        "focus": None if e.focus is None else e.focus // e.block,
        "summary": summary_lines(e, lang, mark=isolate),
        "layers": list(range(e.maps.shape[0])), "heads": list(range(e.maps.shape[1])),
        "maps": _rounded(e.maps), "rollout": _rounded(e.rollout),
        "descriptions": _descriptions(e.descriptions),
    }  # fmt: skip


def seq2seq_panel(e: Seq2SeqExplanation) -> dict:
    """One panel for an encoder-decoder model (JSON-ready): the encoder's rollout at the top
    level (as for encoder models), the three attention kinds under ``kinds`` (the report's kind
    selector)."""
    arrow = "→ (generated greedily)" if e.generated else "→"
    return {
        "text": f"{isolate(e.text)} {arrow} {isolate(e.target)}", "notice": e.notice,
        "summary": alignment_lines(e, mark=isolate), "focus": None, "tokens": e.source_tokens,
        "causal": False, "rollout": _rounded(e.rollout),
        "rollout_caption": ROLLOUT_CAPTION,
        "layers": list(range(e.cross_maps.shape[0])), "heads": list(range(e.cross_maps.shape[1])),
        "kinds": {
            "encoder": _view(e.source_tokens, e.encoder_maps, e.encoder_descriptions, False,
                             KIND_NAMES["encoder"]),
            "decoder": _view(e.decoder_tokens, e.decoder_maps, e.decoder_descriptions, True,
                             KIND_NAMES["decoder"]),
            "cross": _view(e.output_tokens, e.cross_maps, e.cross_descriptions, False,
                           KIND_NAMES["cross"], key_tokens=e.source_tokens),
        },
    }  # fmt: skip


def alignment_panel(e: AlignmentExplanation) -> dict:
    """One panel for RNNsearch (JSON-ready): the alignment as the one kind of attention (one
    layer, one head) and, where other models show the rollout, the alignment again with the
    generated tokens as rows (headed as what it is: there is no rollout)."""
    arrow = "→ (generated greedily)" if e.generated else "→"
    name = "alignment (target rows x source columns)"
    view = _view(e.output_tokens, e.maps, [e.description], False, name, e.source_tokens)
    return {
        "text": f"{isolate(e.text)} {arrow} {isolate(e.target)}", "notice": e.notice,
        "summary": rnn_alignment_lines(e, mark=isolate), "focus": None,
        "tokens": e.output_tokens, "key_tokens": e.source_tokens, "causal": False,
        "rollout": view["maps"][0][0], "rollout_caption": ALIGNMENT_CAPTION,
        "rollout_heading": "Alignment", "layers": [0], "heads": [0], "kinds": {"cross": view},
    }  # fmt: skip


def _view(tokens, maps, descriptions, causal, name, key_tokens=None) -> dict:
    """One attention kind of an encoder-decoder or RNNsearch panel: ``maps (layers, heads, Lq,
    Lk)``."""
    return {
        "name": name, "tokens": tokens, "key_tokens": key_tokens, "causal": causal,
        "focus": None, "layers": list(range(maps.shape[0])), "heads": list(range(maps.shape[1])),
        "maps": _rounded(maps), "descriptions": _descriptions(descriptions),
    }  # fmt: skip


def _descriptions(descriptions: list[HeadDescription]) -> list[dict]:
    keys = ("layer", "head", "pattern", "text", "entropy", "mean_distance", "self_share",
            "previous_share", "next_share", "special_share")  # fmt: skip
    return [
        {**{k: getattr(d, k) for k in keys}, "layer_index": d.layer, "head_index": d.head}
        for d in descriptions
    ]


def _rounded(t: Tensor) -> list:
    """Weights to 4 decimals: enough for the page's colours and tooltips, a smaller file."""
    return (torch.round(t.float() * 10000) / 10000).tolist()


def safe_json(data) -> str:
    """JSON that can sit inside a ``<script>`` element: no ``<``, ``>`` or ``&`` anywhere (so
    ``</script>`` cannot appear), and no U+2028 / U+2029 (line breaks for old JavaScript)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, escaped)
    return text


def render_html(data: dict, title: str = "atenea attention report") -> str:
    """The whole report for ``data`` (see ``report_data``)."""
    viewport = '<meta name="viewport" content="width=device-width">'
    return page(data, title, style=STYLE, body=BODY, script=SCRIPT, head=viewport)


def page(data: dict, title: str, *, style: str, body: str, script: str, head: str = "") -> str:
    """A standalone page: ``data`` as JSON for ``script``, which alone may run (its hash in the
    Content-Security-Policy: nothing else executes, nothing is fetched)."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    policy = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        f"img-src data:; base-uri 'none'; form-action 'none'"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        f"{head}<title>{html.escape(title)}</title>\n"
        f"<style>{style}</style></head>\n<body>\n{body}\n"
        f'<script type="application/json" id="atenea-data">{safe_json(data)}</script>\n'
        f"<script>{script}</script>\n</body></html>\n"
    )
