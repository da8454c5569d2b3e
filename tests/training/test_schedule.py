import math

import pytest
import torch
from torch import nn

from atenea.models import DecoderConfig, DecoderModel
from atenea.training.schedule import lr_factor, make_optimizer, make_scheduler


def test_warmup_then_cosine_to_min_ratio():
    # warmup 4, total 20: (s+1)/5 during warmup, 1 at step 4, half-way (step 12) the cosine is
    # at its midpoint, min_ratio from step 20 on.
    expected = {0: 0.2, 1: 0.4, 3: 0.8, 4: 1.0, 12: 0.1 + 0.9 * 0.5, 20: 0.1, 25: 0.1}
    for step, value in expected.items():
        assert lr_factor(step, 4, 20, 0.1) == pytest.approx(value, abs=1e-12), step
    quarter = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25))
    assert lr_factor(8, 4, 20, 0.1) == pytest.approx(quarter)
    # monotone: up during warmup, down after
    values = [lr_factor(s, 4, 20, 0.1) for s in range(21)]
    assert values[:5] == sorted(values[:5])
    assert values[4:] == sorted(values[4:], reverse=True)


def test_no_warmup_starts_at_full_rate():
    assert lr_factor(0, 0, 10, 0.0) == 1.0
    assert lr_factor(10, 0, 10, 0.0) == pytest.approx(0.0, abs=1e-12)


def test_scheduler_drives_the_optimizer_learning_rate():
    parameter = nn.Parameter(torch.zeros(3, 2))
    optimizer = torch.optim.AdamW([parameter], lr=0.5)
    scheduler = make_scheduler(optimizer, warmup_steps=3, total_steps=10, min_ratio=0.2)
    seen = []
    for _ in range(12):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5 * lr_factor(s, 3, 10, 0.2) for s in range(12)])
    assert seen[0] == pytest.approx(0.5 / 4) and seen[-1] == pytest.approx(0.1)


def test_scheduler_rejects_bad_arguments():
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        make_scheduler(optimizer, 0, 0)
    with pytest.raises(ValueError, match="min_ratio"):
        make_scheduler(optimizer, 0, 10, min_ratio=1.5)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_scheduler(optimizer, -1, 10)


def _groups(model, weight_decay=0.1):
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=weight_decay)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = optimizer.param_groups
    return (
        optimizer,
        {names[id(p)] for p in decay["params"]},
        {names[id(p)] for p in no_decay["params"]},
    )


def test_optimizer_decays_matrices_only():
    model = DecoderModel(
        DecoderConfig.from_name("gpt2-tiny", vocab_size=31, dim=16, num_layers=1, num_heads=2,
                                ffn_hidden=24, max_positions=8, tie_embeddings=False)
    )  # fmt: skip
    optimizer, decay, no_decay = _groups(model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    assert "token_embedding.weight" in no_decay
    assert "position_embedding.table.weight" in no_decay
    assert "lm_head.weight" in decay  # an untied head is a linear map
    for name, p in model.named_parameters():
        assert (name in decay) == (p.dim() >= 2 and "embedding" not in name), name
    assert decay | no_decay == {n for n, _ in model.named_parameters()}
    assert not decay & no_decay


def test_tied_head_is_one_undecayed_tensor():
    model = DecoderModel(
        DecoderConfig.from_name("gpt2-tiny", vocab_size=31, dim=16, num_layers=1, num_heads=2,
                                ffn_hidden=24, max_positions=8)
    )  # fmt: skip
    optimizer, decay, no_decay = _groups(model)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params})  # nothing twice
    assert "token_embedding.weight" in no_decay


def test_frozen_parameters_are_left_out_and_bad_arguments_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    model[0].weight.requires_grad_(False)
    _, decay, no_decay = _groups(model)
    assert decay == set() and no_decay == {"0.bias", "1.weight", "1.bias"}
    with pytest.raises(ValueError, match="lr"):
        make_optimizer(model, lr=0.0, weight_decay=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer(model, lr=1e-3, weight_decay=-1.0)
