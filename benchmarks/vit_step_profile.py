"""Where a ViT training step spends its time: atenea's vit-tiny against Hugging Face's
``ViTForImageClassification`` on the same weights (the ``vit`` case of ``models.py``).

    python benchmarks/vit_step_profile.py            # median wall ms of 10 steps, each side
    python benchmarks/vit_step_profile.py --profile  # and torch.profiler's table of 5 steps

A step: forward on 128 grey 28 x 28 images, cross-entropy, backward, AdamW. The profile is
what found the copies of the old oneDNN weight-gradient route (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import atenea


def models():
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
    return {"atenea": ours.train(), "hf": hf.train()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="also torch.profiler's table")
    args = parser.parse_args(argv)
    contenders = models()
    pixels, labels = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in contenders.items()}

    def step(name):
        contenders[name](pixels, labels=labels).loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad()

    for name in contenders:  # warm-up
        for _ in range(3):
            step(name)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in ["atenea", "hf"] * 2:  # interleaved, twice
        times = []
        for _ in range(10):
            started = time.perf_counter()
            step(name)
            times.append(time.perf_counter() - started)
        print(f"{name}: {statistics.median(times) * 1e3:.1f} ms a step")
    if args.profile:
        from torch.profiler import profile

        for name in contenders:
            with profile() as prof:
                for _ in range(5):
                    step(name)
            print(f"\n{name}, 5 steps")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
