"""Inspection: attention captured on the fast path, rollout, head descriptors, heatmaps and a
standalone HTML report (``atenea explain``), for encoder, decoder and encoder-decoder models."""

from atenea.inspect.alignment import AlignmentExplanation, explain_alignment
from atenea.inspect.analysis import (
    HeadDescription,
    describe_head,
    describe_heads,
    pool_map,
    rollout,
)
from atenea.inspect.capture import capture, record
from atenea.inspect.explain import Explanation, explain
from atenea.inspect.report import render_html, report_data, safe_json
from atenea.inspect.seq2seq import Seq2SeqExplanation, explain_seq2seq
from atenea.inspect.tokens import ExplainError

__all__ = [
    "AlignmentExplanation",
    "explain_alignment",
    "Explanation",
    "ExplainError",
    "HeadDescription",
    "Seq2SeqExplanation",
    "capture",
    "describe_head",
    "describe_heads",
    "explain",
    "explain_seq2seq",
    "pool_map",
    "record",
    "render_html",
    "report_data",
    "rollout",
    "safe_json",
]
