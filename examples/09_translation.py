"""Idea 10 -- translation with an encoder-decoder: the encoder reads the whole source with
self-attention (its output is the memory); the decoder writes the target one token at a time
with causal self-attention, and cross-attention lets each target token look at the source.

The "language" here is tiny: the target is the source read backwards, so a trained model's
cross-attention must look at the mirrored source position -- an anti-diagonal you can see.
Trained in seconds; the real thing: atenea train translate (dates in words -> ISO dates).

    python examples/09_translation.py
"""

import torch

import atenea
from atenea.models import EncoderDecoderConfig, EncoderDecoderModel

PAD, BOS, EOS, LENGTH = 0, 1, 2, 6  # tokens 3..12 are the "words"
torch.manual_seed(0)
config = EncoderDecoderConfig.from_name(
    "transformer-tiny", src_vocab_size=13, tgt_vocab_size=13, num_encoder_layers=1,
    num_decoder_layers=1, dropout=0.0, norm_position="pre",
)  # fmt: skip
model = EncoderDecoderModel(config)


def batch(size: int):
    source = torch.randint(3, 13, (size, LENGTH))
    target = source.flip(1)
    decoder_in = torch.cat([torch.full((size, 1), BOS), target], 1)  # shifted right
    labels = torch.cat([target, torch.full((size, 1), EOS)], 1)
    return source, decoder_in, labels


optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
for _ in range(150):
    source, decoder_in, labels = batch(32)
    loss = model.train()(source, decoder_in, labels=labels).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss after training: {loss.item():.3f}")

source = torch.tensor([[3, 4, 5, 6, 7, 8]])
generated = atenea.generate(model.eval(), source, max_new_tokens=LENGTH + 1)
print("source:", source[0].tolist(), "-> generated:", generated[0].tolist())

# Cross-attention of the last decoder layer: rows = target positions, columns = source.
source, decoder_in, _ = batch(1)
with torch.no_grad():
    out = model(source, decoder_in, output_attentions=True)
cross = out.cross_attentions[-1][0].mean(0)  # heads averaged: (T + 1, S)
print("where each target token looks in the source (argmax per row):",
      cross[:LENGTH].argmax(-1).tolist(), "(backwards: 5, 4, 3, 2, 1, 0)")  # fmt: skip
