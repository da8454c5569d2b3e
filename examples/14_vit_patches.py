"""Idea 16 -- the Vision Transformer: attention over the patches of an image.

An image is cut into square patches; each patch is flattened and projected to a vector (one
strided convolution does both), a [CLS] vector goes in front, learned positions are added,
and the usual transformer blocks let every patch attend to every other. The classifier reads
the final [CLS] vector. Nothing in the blocks knows it is looking at a picture.

Here: scikit-learn's 8 x 8 handwritten digits, 2 x 2 patches (16 patches + [CLS]). The real
thing: atenea train images (Fashion-MNIST), atenea explain --image PATH --model RUN.

    python examples/14_vit_patches.py
"""

import torch
from sklearn.datasets import load_digits

from atenea.models import ViTConfig, ViTForImageClassification

config = ViTConfig.from_name(
    "vit-tiny", image_size=8, patch_size=2, dim=48, num_layers=2, num_heads=4, ffn_hidden=96
)
torch.manual_seed(0)
model = ViTForImageClassification(config, num_labels=10)

# 1. The patch embedding is "cut, flatten, multiply": the convolution equals a reshape + matmul.
images = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16  # (N, 1, 8, 8)
pixels = (images - 0.5) / 0.5  # the normalisation the config records (mean 0.5, std 0.5)
conv = model.vit.patch_embedding
patches = pixels[:2].unfold(2, 2, 2).unfold(3, 2, 2)  # (2, 1, 4, 4, 2, 2): a 4 x 4 grid
flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 16, 4)  # 16 patches of 4 pixels
by_hand = flat @ conv.weight.reshape(config.dim, 4).T + conv.bias
assert torch.allclose(conv(pixels[:2]).flatten(2).transpose(1, 2), by_hand, atol=1e-5)
print(f"an 8 x 8 digit -> {flat.shape[1]} patches of {flat.shape[2]} pixels -> "
      f"{1 + flat.shape[1]} tokens of {config.dim} numbers")  # fmt: skip

# 2. Train it briefly; test on digits it never saw.
labels = torch.tensor(load_digits().target)
order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
train, test = order[:1500], order[1500:]
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
for _ in range(300):
    batch = train[torch.randint(0, len(train), (64,))]
    loss = model.train()(pixels[batch], labels=labels[batch]).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
with torch.no_grad():
    out = model.eval()(pixels[test], output_attentions=True)
accuracy = (out.logits.argmax(-1) == labels[test]).float().mean().item()
print(f"test accuracy after 300 steps: {accuracy:.1%} on {len(test)} unseen digits")

# 3. What [CLS] attends to in the last layer, heads averaged, as a 4 x 4 grid over the image.
cls_row = out.attentions[-1][0].mean(0)[0, 1:].reshape(4, 4)  # the first test digit
print(f"digit {labels[test[0]].item()}: [CLS] attention per patch")
for row in cls_row.tolist():
    print("  " + " ".join(f"{w:.2f}" for w in row))
assert accuracy > 0.85
assert abs(out.attentions[-1][0].sum(-1) - 1).max() < 1e-5  # every row is a distribution
