"""Pieces every model shares: input checks, running a stack of blocks (with what inspection
records on the way), weight initialisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from atenea.models.outputs import Intermediates

IGNORE = -100  # the label of a position that is not predicted (cross entropy skips it)


def next_tokens(labels: Tensor) -> Tensor:
    """The targets of a decoder's positions ``(B, L)``: position ``t`` predicts
    ``labels[t + 1]``; the last predicts nothing (``IGNORE``). Shifting the labels, not the
    logits: ``logits[:, :-1]`` is a strided view whose flatten copies the whole
    ``(B, L-1, vocab)`` tensor (and its backward another one)."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE)


def check_ids(
    input_ids: Tensor, vocab_size: int, name: str = "input_ids", kind: str = "token ids",
    bound: str = "this vocabulary",
) -> None:  # fmt: skip
    """Token ids must be a ``(B, L)`` integer tensor with values in ``[0, vocab_size)``
    (``kind`` and ``bound`` name them and their limit in the message: segment ids, ...)."""
    if not isinstance(input_ids, Tensor):
        raise TypeError(
            f"{name}: expected a (B, L) tensor of token ids, got {type(input_ids).__name__}"
        )
    if input_ids.dim() != 2:
        raise ValueError(f"{name}: expected shape (B, L), got {tuple(input_ids.shape)}")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer token ids, got dtype {input_ids.dtype}")
    # The range check reads values back to the host, which a compiled graph cannot do;
    # compiled callers (generation) check the ids before they start. A meta tensor (shapes
    # only, for tracing) has no values to check.
    readable = input_ids.device.type != "meta" and not torch.compiler.is_compiling()
    if input_ids.numel() and readable:
        low, high = torch.stack(torch.aminmax(input_ids)).tolist()  # one read, not two
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{name}: {kind} must lie in [0, {vocab_size}) for {bound}, got values from "
                f"{low} to {high}"
            )


def check_attention_mask(attention_mask: Tensor | None, input_ids: Tensor) -> None:
    check_like_ids(attention_mask, input_ids, "attention_mask", "1 = token, 0 = padding")


def check_like_ids(values: Tensor | None, input_ids: Tensor, name: str, meaning: str) -> None:
    """A per-token input (``meaning`` says what it holds) must have the shape of input_ids."""
    if values is not None and tuple(values.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"{name}: expected the shape of input_ids {tuple(input_ids.shape)} ({meaning}), got "
            f"{tuple(values.shape)}"
        )


def and_masks(*parts):
    """``a & b & ...`` over the parts that are not None (None: no mask at all)."""
    present = [part for part in parts if part is not None]
    if not present:
        return None
    combined = present[0]
    for part in present[1:]:
        combined = combined & part
    return combined


def recording(output_attentions: bool, output_hidden_states: bool, intermediates):
    """The ``Intermediates`` a forward pass fills: the caller's, or a private one when only
    ``output_attentions`` / ``output_hidden_states`` was asked for, or None."""
    if intermediates is not None:
        if output_hidden_states:
            intermediates.keep_hidden_states = True
        return intermediates
    if output_attentions or output_hidden_states:
        return Intermediates(keep_hidden_states=output_hidden_states)
    return None


def recorded(inter, output_attentions: bool, output_hidden_states: bool, intermediates) -> dict:
    """The ``ModelOutput`` fields a forward fills from its record (``recording``'s): the
    attentions and hidden states asked for, and the caller's ``intermediates``."""
    return dict(
        attentions=inter.attentions() if output_attentions else None,
        hidden_states=tuple(inter.hidden_states) if output_hidden_states else None,
        intermediates=intermediates,
    )


def run_blocks(
    blocks, x: Tensor, intermediates=None, *, side: str = "", final_norm=None, cache=None,
    **inputs,
) -> Tensor:  # fmt: skip
    """``x (B, L, dim)`` through every block, then ``final_norm`` (if any): the stack of every
    model. ``inputs`` go to each block (``mask``, ``positions``, ``memory``, ``write``, ...);
    ``cache``: a ``Cache``, whose per-layer parts each block gets.

    With ``intermediates``, each block's attention record goes to ``{side}attention`` (its
    cross-attention's to ``cross_attention``), and with ``keep_hidden_states`` the input of
    every block and the final output to ``{side}hidden_states``; ``side`` is ``"encoder_"`` for
    the encoder of an encoder-decoder model."""
    recording = intermediates is not None
    states = None
    if recording and intermediates.keep_hidden_states:
        states = getattr(intermediates, f"{side}hidden_states")
    for index, block in enumerate(blocks):
        if states is not None:
            states.append(x)
        x = block(
            x,
            cache=cache.layers[index] if cache is not None else None,
            cross_cache=cache.cross[index] if cache is not None and cache.cross else None,
            records=getattr(intermediates, f"{side}attention") if recording else None,
            cross_records=intermediates.cross_attention if recording else None,
            **inputs,
        )
    if final_norm is not None:
        x = final_norm(x)
    if states is not None:
        states.append(x)
    return x


def init_weights(module: torch.nn.Module, std: float = 0.02) -> None:
    """GPT-2 / BERT initialisation: normal(0, 0.02) weights, zero biases, unit norms; the
    padding row of an embedding stays zero. Use as ``model.apply(init_weights)``."""
    if isinstance(module, torch.nn.Linear):
        torch.nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.Embedding):
        torch.nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
