"""In-context retrieval (Ram et al. 2023, "in-context RALM"): put retrieved passages before a
document and measure how much better the language model predicts the document's own tokens.

    [ passage 1 </s> passage 2 </s> ... | document ]
      context (cut from the left to fit)    scored: the document's tokens 2..n

The first token of the document is not scored in either case (without passages it has no
context at all), so the two perplexities cover exactly the same tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from atenea.retrieval.corpus import CorpusError


@torch.no_grad()
def document_nll(model, context: list[int], document: list[int]) -> tuple[float, int]:
    """Summed negative log-likelihood of ``document[1:]`` given ``context + document[:1]``,
    and the number of tokens scored. ``model``: a ``DecoderModel``."""
    device = model.output_weight.device
    ids = torch.tensor([context + document], device=device)
    logits = model(ids).logits[0, len(context) : -1]  # position t predicts t + 1
    targets = ids[0, len(context) + 1 :]
    return float(F.cross_entropy(logits, targets, reduction="sum")), len(targets)


def in_context_perplexity(
    model, tokenizer, documents: list[str], passages: list[list[str]], max_length: int
) -> dict:
    """Perplexity of each document's own tokens with its ``passages`` before it and without.

    ``documents[i]`` is scored with ``passages[i]`` (best first: the best passage sits next to
    the document, as the closest context); each document is cut to ``max_length // 2`` tokens
    and the context to what is left of ``max_length``."""
    if len(documents) != len(passages):
        raise CorpusError(f"passages: expected one list per document ({len(documents)}), "
                          f"got {len(passages)}")  # fmt: skip
    eos = model.config.eos_token_id
    totals = {"with": 0.0, "without": 0.0}
    count = 0
    for text, retrieved in zip(documents, passages, strict=True):
        document = tokenizer.encode(text, add_special_tokens=False)[: max_length // 2]
        if len(document) < 2:
            continue
        context = []
        for passage in retrieved:  # best first, placed last
            context = tokenizer.encode(passage, add_special_tokens=False) + [eos] + context
        budget = max_length - len(document)
        context = context[-budget:] if budget > 0 else []  # the nearest passages kept
        with_nll, scored = document_nll(model, context, document)
        without_nll, _ = document_nll(model, [], document)
        totals["with"] += with_nll
        totals["without"] += without_nll
        count += scored
    if not count:
        raise CorpusError("documents: none has two tokens to score")
    return {"perplexity_with_passages": math.exp(totals["with"] / count),
            "perplexity_without": math.exp(totals["without"] / count), "tokens": count}  # fmt: skip
