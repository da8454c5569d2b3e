"""Idea 15 -- Bahdanau's attention: where attention began (RNNsearch, 2015).

An RNN encoder reads the source into one state per word; an RNN decoder writes the target.
Without attention (RNNencdec) the decoder gets the whole sentence squeezed into one vector. With
it (RNNsearch), at every output word i the decoder scores every source state h_j against its
own previous state s, turns the scores into weights alpha_ij with a softmax, and reads the
context c_i = sum_j alpha_ij h_j. The score is a small network: v . tanh(W s + U h_j).

The task is the mirror again (idea 10): the target is the source read backwards, so the trained
alignment must be an anti-diagonal. The real thing, on the Bible in Spanish and English:
atenea train translate --arch rnnsearch --data bible-es-en.

    python examples/13_bahdanau_attention.py
"""

import torch

import atenea
from atenea.models import RNNConfig, RNNEncDec, RNNSearch
from atenea.nn import Alignment

# 1. The additive score by hand, against atenea's module: alpha = softmax(v . tanh(W s + U h)).
torch.manual_seed(0)
align = Alignment(query_dim=5, key_dim=4, hidden_dim=3, score="additive").double()
s, h = torch.randn(1, 5, dtype=torch.float64), torch.randn(1, 6, 4, dtype=torch.float64)
mask = torch.tensor([[1, 1, 1, 1, 0, 0]])  # the last two source positions are padding
context, alpha = align(s, h, mask)
a = align.additive  # W = query_proj, U (+ b) = key_proj, v = score
W, U, b, v = a.query_proj.weight, a.key_proj.weight, a.key_proj.bias, a.score.weight[0]
scores = torch.tanh(s @ W.T + h @ U.T + b) @ v  # (1, 6): one score per source word
by_hand = torch.softmax(scores.masked_fill(mask == 0, float("-inf")), -1)
assert torch.allclose(alpha, by_hand) and alpha[0, 4:].eq(0).all()
assert torch.allclose(context, (by_hand[:, :, None] * h).sum(1))
print("alignment weights over 4 words + 2 pads:", [round(a, 3) for a in alpha[0].tolist()])

# 2. Train RNNsearch and the RNN without attention on the mirror, with the same budget.
PAD, BOS, EOS, LENGTH = 0, 1, 2, 8


def batch(size: int):
    source = torch.randint(3, 13, (size, LENGTH))
    target = source.flip(1)
    decoder_in = torch.cat([torch.full((size, 1), BOS), target], 1)
    labels = torch.cat([target, torch.full((size, 1), EOS)], 1)
    return source, decoder_in, labels


config = RNNConfig.from_name("rnnsearch-tiny", src_vocab_size=13, tgt_vocab_size=13)
accuracy, trained = {}, {}
for cls in (RNNSearch, RNNEncDec):
    torch.manual_seed(0)
    model = cls(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        source, decoder_in, labels = batch(32)
        loss = model.train()(source, decoder_in, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    source, _, labels = batch(200)
    out = atenea.generate(model.eval(), source, max_new_tokens=LENGTH + 1, eos_token_id=[])
    accuracy[cls.__name__] = (out[:, 1 : LENGTH + 1] == labels[:, :LENGTH]).float().mean().item()
    trained[cls.__name__] = model
    print(f"{cls.__name__:<10} tokens right after 300 steps: {accuracy[cls.__name__]:.1%}")

# 3. RNNsearch's alignment: rows = target words, columns = source words (their Figure 3).
source, decoder_in, _ = batch(1)
with torch.no_grad():
    out = trained["RNNSearch"](source, decoder_in, output_attentions=True)
weights = out.cross_attentions[0][0, 0]  # one layer, one "head": (T + 1, S)
looks = weights[:LENGTH].argmax(-1).tolist()
print("where each target word looks in the source:", looks, "(the mirror: 7, 6, ..., 0)")
assert accuracy["RNNSearch"] > accuracy["RNNEncDec"]
assert sum(j == LENGTH - 1 - i for i, j in enumerate(looks)) >= LENGTH - 2
