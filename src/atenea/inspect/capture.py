"""Capturing attention from any atenea model, on the fast path.

The model runs as usual (fused kernels, tiles); each attention layer leaves an
``AttentionRecord`` -- its queries, keys and row log-sum-exp. The weights are rebuilt from
those, only for the layers, heads and rows asked for: a 4096-token input costs
``layers x L x D`` to record, not ``layers x heads x L x L``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atenea.inspect.analysis import LayerStats
from atenea.models.decoder import DecoderModel
from atenea.models.encoder import EncoderForMaskedLM, EncoderForSequenceClassification
from atenea.models.encoder_decoder import EncoderDecoderModel
from atenea.models.outputs import Intermediates


def base_model(model):
    """The model whose attention layers run: the encoder inside a model with a task head, any
    other model itself."""
    if isinstance(model, (EncoderForMaskedLM, EncoderForSequenceClassification)):
        return model.encoder
    return model


@torch.no_grad()
def record(model, input_ids: Tensor, attention_mask=None, token_type_ids=None, target_ids=None):
    """Run ``model`` once and return its ``Intermediates`` (records of every attention layer).
    Encoder-decoder models need ``target_ids`` (the decoder's input)."""
    inter = Intermediates()
    model = base_model(model)
    device = next(model.parameters()).device  # the inputs go where the model is (a GPU)
    input_ids, attention_mask, token_type_ids, target_ids = (
        None if t is None else t.to(device)
        for t in (input_ids, attention_mask, token_type_ids, target_ids)
    )
    if isinstance(model, EncoderDecoderModel):
        if target_ids is None:
            raise ValueError("capture: an encoder-decoder model needs target_ids for its decoder")
        model(input_ids, target_ids, attention_mask, intermediates=inter)
    elif isinstance(model, DecoderModel):
        model(input_ids, attention_mask, intermediates=inter, logits_to_keep=1)
    else:
        model(input_ids, attention_mask, token_type_ids, intermediates=inter)
    return inter


def capture(
    model,
    input_ids: Tensor,
    attention_mask=None,
    token_type_ids=None,
    *,
    target_ids=None,
    kind: str = "self",
    layers=None,
    heads=None,
    rows=None,
    example: int = 0,
) -> Tensor:
    """Weights ``(layers, heads, rows, Lk)`` of one example of a batch, rebuilt from the
    log-sum-exp. ``kind``: ``"self"`` (the decoder's for encoder-decoder models), ``"cross"``
    or ``"encoder"``. ``layers``/``heads``/``rows``: lists of indices (None = all)."""
    if kind not in ("self", "cross", "encoder"):
        raise ValueError(f"kind: expected 'self', 'cross' or 'encoder', got {kind!r}")
    batch = input_ids.shape[0] if isinstance(input_ids, Tensor) and input_ids.dim() else 0
    if not -batch <= example < batch:
        raise ValueError(f"example: expected an index into the batch of {batch}, got {example}")
    if layers is not None and not len(layers):
        raise ValueError("layers: expected None (all) or at least one layer index, got none")
    inter = record(model, input_ids, attention_mask, token_type_ids, target_ids)
    records = {"self": inter.attention, "cross": inter.cross_attention,
               "encoder": inter.encoder_attention}[kind]  # fmt: skip
    if not records:
        raise ValueError(f"capture: this model has no {kind}-attention layers")
    layer_ids = range(len(records)) if layers is None else layers
    for layer in layer_ids:
        if not -len(records) <= layer < len(records):
            raise ValueError(f"layer: expected 0..{len(records) - 1}, got {layer}")
    return torch.stack(
        [records[layer].weights(rows=rows, heads=heads)[example] for layer in layer_ids]
    ).float()


@torch.no_grad()
def scan(
    records, special: list[bool], size: int, focus: int | None = None, rows_per_step: int = 256
):
    """One pass over the records of every layer, returning what a report needs:

    - the maps ``(layers, heads, n, n)``. Up to ``size`` tokens: every weight, exact
      (``n = L``). Beyond: tokens are grouped in ``n`` blocks of ``block = ceil(L / size)``;
      row ``b`` is the attention of block ``b``'s middle token (exact), summed over each block
      of keys -- so only ``n`` of the ``L`` rows are ever rebuilt;
    - the head descriptors, from the same rows;
    - the focus token's exact rows ``(layers, heads, L)`` (None without a focus);
    - ``block``.

    Memory: ``heads x rows_per_step x L`` weights at a time, never ``L x L`` per head.
    """
    length = records[0].lse.shape[-1]
    block = -(-length // size) if length > size else 1
    cells = -(-length // block)
    if block == 1:
        chunks = torch.arange(length).split(rows_per_step)
    else:  # one representative query per block: its middle token
        chunks = [(torch.arange(cells) * block + block // 2).clamp(max=length - 1)]
    maps, descriptions, focus_rows = [], [], []
    for layer, rec in enumerate(records):
        heads = rec.lse.shape[1]
        stats = LayerStats(heads, special, length)
        rows_out = []
        for rows in chunks:
            # (heads, rows, L), rebuilt where the model ran (a GPU), summed up on the CPU
            weights = rec.weights(rows=rows)[0].float().cpu()
            if focus is not None and block == 1 and bool((rows == focus).any()):
                focus_rows.append(weights[:, int((rows == focus).nonzero()[-1])])
            stats.add(weights, rows)
            if block > 1:  # sum the keys of each block: every row still sums to 1
                weights = block_sums(weights, block)
            rows_out.append(weights)
        maps.append(torch.cat(rows_out, dim=1))
        if focus is not None and block > 1:  # not among the representatives: its own rows
            focus_rows.append(rec.weights(rows=[focus])[0, :, 0].float().cpu())
        descriptions += stats.descriptions(layer)
    focus_rows = torch.stack(focus_rows) if focus is not None else None
    return torch.stack(maps), descriptions, focus_rows, block


def block_sums(weights: Tensor, block: int) -> Tensor:
    """``(..., L)`` -> ``(..., ceil(L / block))``: the sum of each run of ``block`` keys (the last
    run may be shorter). Views of the whole blocks, no padded copy of the weights."""
    whole = weights.shape[-1] // block * block
    sums = [weights[..., :whole].unflatten(-1, (-1, block)).sum(-1)]
    if whole < weights.shape[-1]:
        sums.append(weights[..., whole:].sum(-1, keepdim=True))
    return torch.cat(sums, dim=-1)
