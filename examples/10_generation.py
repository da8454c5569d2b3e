"""Idea 11 -- generation: a causal decoder predicts the next token from the ones before it, a
distribution over the vocabulary at each step; a decoding strategy turns those distributions
into text. Greedy takes the most likely token, sampling draws one (temperature, top-k, top-p
reshape the distribution), beam search keeps the best few partial sequences.

A tiny decoder learns to count (3 4 5 6 ...) in a few seconds, so the three strategies have
something to agree or disagree about. A real model: atenea generate --model PATH.

    python examples/10_generation.py
"""

import torch

import atenea
from atenea.models import DecoderConfig, DecoderModel

torch.manual_seed(0)
VOCAB = 20
config = DecoderConfig.from_name("gpt2-tiny", vocab_size=VOCAB, num_layers=1, max_positions=32,
                                 bos_token_id=None, eos_token_id=None)  # fmt: skip
model = DecoderModel(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
for _ in range(80):  # sequences that count upwards from a random start, wrapping at VOCAB
    starts = torch.randint(0, VOCAB, (32, 1))
    ids = (starts + torch.arange(12)) % VOCAB
    loss = model.train()(ids, labels=ids).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss after training: {loss.item():.3f}")

model.eval()
prompt = torch.tensor([[3, 4, 5]])
greedy = atenea.generate(model, prompt, max_new_tokens=6)
print("greedy:  ", greedy[0, 3:].tolist())

torch.manual_seed(1)
hot = atenea.generate(model, prompt, max_new_tokens=6, do_sample=True, temperature=2.0)
print("sampling (temperature 2, more surprises):", hot[0, 3:].tolist())
focused = atenea.generate(model, prompt, max_new_tokens=6, do_sample=True, top_k=1)
assert torch.equal(focused, greedy)  # top-k = 1 leaves only the greedy choice
print("sampling with top_k=1 is greedy:", focused[0, 3:].tolist())

beams = atenea.generate(model, prompt, max_new_tokens=6, num_beams=3, return_beams=True)
best = beams.sequences[0, 3:].tolist()  # the best beam; beams.scores: (batch, beams)
print("beam search (3 beams), best:", best, f"score {float(beams.scores[0, 0]):.3f}")
