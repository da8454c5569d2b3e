"""Renaming rules between Hugging Face tensor names and atenea's, and the shape of a family.

A family (``bert.py``, ``gpt2.py``, ``llama.py``) is a list of ``Rule`` s, each pairing one
Hugging Face name with one atenea name (``{i}`` a layer index, ``{p}`` ``weight`` or ``bias``)
and saying whether the matrix is stored transposed; plus a config translation both ways.
``convert`` applies the same rules in either direction, so a folder atenea reads and the folder
it writes back use one table, and ``transformers`` loads what atenea writes.

    Rule("h.{i}.ln_1.{p}", "layers.{i}.attention_norm.{p}")
    convert({"h.0.ln_1.weight": w}, rules, to="ours") == {"layers.0.attention_norm.weight": w}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from atenea.models.pretrained.safetensors import CheckpointError


@dataclass(frozen=True)
class Rule:
    """``hf`` <-> ``ours``; ``{i}`` is a layer index, ``{p}`` weight or bias. ``transpose``:
    the checkpoint stores the matrix as ``(in, out)`` (GPT-2's ``Conv1D``), atenea as
    ``(out, in)``."""

    hf: str
    ours: str
    transpose: bool = False

    def prefixed(self, hf_prefix: str, our_prefix: str) -> Rule:
        """The same rule under a parent module on either side (``bert.``, ``encoder.``)."""
        return Rule(hf_prefix + self.hf, our_prefix + self.ours, self.transpose)


@dataclass(frozen=True)
class LoadPlan:
    """What a Hugging Face checkpoint becomes: ``model_class(config, **kwargs)``, its tensors
    renamed by ``rules``."""

    model_class: type[nn.Module]
    config: Any
    kwargs: dict
    rules: list[Rule]


@dataclass(frozen=True)
class SavePlan:
    """How a model is written as a Hugging Face checkpoint: its ``config.json``, the rules
    renaming its state dict, and other JSON files of the folder (``{name: object}``, e.g. an
    image processor's ``preprocessor_config.json``)."""

    config: dict
    rules: list[Rule]
    files: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """One Hugging Face architecture atenea reads and writes.

    ``model_type``: ``config.json``'s ``"model_type"``. ``plan_load(config, tensor_names)``:
    the model to build and the rules (a ``CheckpointError`` for options atenea cannot
    reproduce). ``plan_save(model)``: the ``SavePlan``, or None when the model has no
    equivalent in this family. ``ignore``: regular expressions of checkpoint tensors that are
    not weights (buffers, copies of tied weights), skipped when reading.
    """

    model_type: str
    plan_load: Callable[[dict, set[str]], LoadPlan]
    plan_save: Callable[[nn.Module], SavePlan | None]
    ignore: tuple[str, ...] = field(default=())


_FIELDS = {"i": r"(?P<i>\d+)", "p": r"(?P<p>weight|bias)"}


def rule_pattern(template: str) -> re.Pattern:
    """``"h.{i}.ln_1.{p}"`` -> a regex matching ``h.0.ln_1.weight`` with groups ``i``, ``p``."""
    escaped = re.escape(template).replace(r"\{i\}", "{i}").replace(r"\{p\}", "{p}")
    return re.compile(escaped.format(**_FIELDS))


def _shown(names: list[str]) -> str:
    """``'a', 'b', ... and N more`` (at most six names, so the message stays one line)."""
    shown = ", ".join(f"'{n}'" for n in names[:6])
    return shown + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def rename(
    names: Iterable[str],
    rules: list[Rule],
    to: Literal["ours", "hf"],
    ignore: Iterable[str] = (),
    source: str | None = None,
) -> dict[str, tuple[str, bool]]:
    """``{name: (new name, transpose)}`` for every name a rule knows; the rest must match an
    ``ignore`` pattern (skipped), else a ``CheckpointError`` lists them (prefixed by
    ``source``)."""
    if to not in ("ours", "hf"):
        raise ValueError(f"to: expected 'ours' or 'hf', got {to!r}")
    compiled = [(rule_pattern(rule.hf if to == "ours" else rule.ours), rule) for rule in rules]
    ignored = [re.compile(pattern) for pattern in ignore]
    renamed, unknown = {}, []
    for name in names:  # a rule wins over an ignore pattern: an untied head has a rule then
        for pattern, rule in compiled:
            match = pattern.fullmatch(name)
            if match:
                target = rule.ours if to == "ours" else rule.hf
                renamed[name] = (target.format(**match.groupdict()), rule.transpose)
                break
        else:
            if not any(pattern.fullmatch(name) for pattern in ignored):
                unknown.append(name)
    if unknown:
        where = "the checkpoint" if to == "ours" else "the model"
        prefix = f"{source}: " if source else ""
        raise CheckpointError(f"{prefix}unexpected tensors in {where}: {_shown(sorted(unknown))}")
    return renamed


def convert(
    tensors: dict[str, torch.Tensor],
    rules: list[Rule],
    to: Literal["ours", "hf"],
    ignore: Iterable[str] = (),
    source: str | None = None,
) -> dict[str, torch.Tensor]:
    """``tensors`` renamed by ``rules`` (Hugging Face -> atenea with ``to="ours"``, back with
    ``to="hf"``), transposed where a rule says so. The same rules serve both directions, so
    ``convert(convert(t, rules, "ours"), rules, "hf")`` gives ``t`` back."""
    renamed = rename(tensors, rules, to, ignore, source)
    return {
        new: (tensors[old].t() if transpose else tensors[old])
        for old, (new, transpose) in renamed.items()
    }


# ---------------------------------------------------------------------------------------------
# Config pieces BERT and GPT-2 share
# ---------------------------------------------------------------------------------------------

HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "relu": "relu", "silu": "silu"}  # fmt: skip
OUR_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def activation_from_hf(hf: dict, key: str) -> str:
    """atenea's name for the activation ``config.json`` names under ``key`` (default gelu)."""
    name = hf.get(key, "gelu")
    if name not in HF_ACTIVATIONS:
        raise CheckpointError(f"config.json: activation {key}={name!r} is not supported")
    return HF_ACTIVATIONS[name]
