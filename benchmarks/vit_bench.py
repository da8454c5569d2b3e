"""The ViT case of ``benchmarks/models.py``: a training step of ``atenea train images``'s
model against ``transformers.ViTForImageClassification`` with the same config and weights.

A step: forward on a batch of 28 x 28 grey images (Fashion-MNIST's shape), cross-entropy on 10
classes, backward, ``AdamW.step``, ``zero_grad``. Sizes: the vit-tiny preset (4 layers, width
64, 4 heads, 4 x 4 patches: 50 tokens an image), batch 128 (the task's default); ``--quick``:
batch 16. Same initial weights (Hugging Face's, read by ``atenea.load_pretrained``) and the same
data; check: the losses of every step agree.
"""

from __future__ import annotations

import tempfile

import torch

import atenea


def vit_pair():
    """``(atenea's model, Hugging Face's)``: vit-tiny for 10 classes, the same weights
    (Hugging Face's, read back by ``atenea.load_pretrained``), both in training mode."""
    from transformers import ViTConfig as HFConfig
    from transformers import ViTForImageClassification as HFViT

    from atenea.models import ViTConfig

    preset = ViTConfig.from_name("vit-tiny")
    config = HFConfig(
        image_size=preset.image_size, patch_size=preset.patch_size,
        num_channels=preset.num_channels, hidden_size=preset.dim,
        num_hidden_layers=preset.num_layers, num_attention_heads=preset.num_heads,
        intermediate_size=preset.ffn_hidden, num_labels=10, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, layer_norm_eps=preset.norm_eps,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = HFViT(config)
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours, _ = atenea.load_pretrained(folder)
    return ours.train(), hf.train()


def bench_vit_train(batch: int, reps: int, timed_together) -> dict:
    ours, hf = vit_pair()
    preset = ours.config
    generator = torch.Generator().manual_seed(3)
    pixels = torch.randn(batch, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    models = {"atenea": ours, "hf": hf}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in models.items()}
    losses = {"atenea": [], "hf": []}

    def step(name):
        loss = models[name](pixels, labels=labels).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad()
        losses[name].append(float(loss))

    times = timed_together({"atenea": lambda: step("atenea"), "hf": lambda: step("hf")}, reps)
    diffs = [abs(a - b) for a, b in zip(losses["atenea"], losses["hf"])]
    return {
        "batch": batch, "tokens_per_image": 1 + (28 // preset.patch_size) ** 2,
        "layers": preset.num_layers, "dim": preset.dim, "heads": preset.num_heads,
        "params": sum(p.numel() for p in hf.parameters()), "steps": len(losses["hf"]),
        "first_loss_atenea": losses["atenea"][0], "first_loss_hf": losses["hf"][0],
        "max_loss_diff": max(diffs), "losses_agree": max(diffs) < 1e-3, **times,
    }  # fmt: skip


def report_row(v: dict, ratios, ok) -> str:
    """The markdown row of ``benchmarks/models.py``'s table."""
    images = v["batch"]
    return (
        f"| ViT train step (vit-tiny: {v['layers']} layers, {v['dim']} wide, {v['heads']} heads, "
        f"{v['tokens_per_image']} tokens an image), B={images}, 28x28, AdamW "
        f"| {images / v['atenea']:,.0f} img/s | {images / v['hf']:,.0f} img/s "
        f"| HF ViTForImageClassification | {ratios(v, 'hf', 'atenea')} "
        f"| {ok(v['losses_agree'])} max loss diff over {v['steps']} steps "
        f"{v['max_loss_diff']:.1e} |"
    )
