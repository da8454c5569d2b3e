"""Idea 9 -- text classification: the encoder gives one vector per token, one vector stands
for the whole sentence (here the mean of the token vectors), and a final layer turns it into
class probabilities. Trained for a few seconds on atenea's built-in sentiment sentences, whose
labels need attention across words ("not bad at all", "good, but ...").

    python examples/08_classification.py      (the full run: atenea train classify)
"""

import torch

from atenea.models import EncoderConfig, EncoderForSequenceClassification
from atenea.training.datasets import sentiment

torch.manual_seed(0)
data = sentiment.split(1000, 200, seed=0)  # made by atenea's own code: nothing is downloaded
labels = sorted({e["label"] for e in data.train})
vocab = {"[PAD]": 0, "[UNK]": 1}
for example in data.train:  # a word-level vocabulary, to keep the example short
    for word in example["text"].lower().split():
        vocab.setdefault(word, len(vocab))


def encode(examples):
    rows = [[vocab.get(w, 1) for w in e["text"].lower().split()][:24] for e in examples]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    target = torch.tensor([labels.index(e["label"]) for e in examples])
    return ids, (ids != 0).long(), target


config = EncoderConfig(vocab_size=len(vocab), dim=32, num_layers=1, num_heads=2, ffn_hidden=64,
                       max_positions=32, pad_token_id=0, dropout=0.0)  # fmt: skip
model = EncoderForSequenceClassification(config, num_labels=len(labels), pooling="mean")
train_ids, train_mask, train_labels = encode(data.train)
test_ids, test_mask, test_labels = encode(data.validation)


def accuracy() -> float:
    with torch.no_grad():
        logits = model.eval()(test_ids, test_mask).logits
    return float((logits.argmax(-1) == test_labels).float().mean())


before = accuracy()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
for _ in range(150):
    batch = torch.randint(0, len(train_ids), (64,))
    loss = model.train()(train_ids[batch], train_mask[batch], labels=train_labels[batch]).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"accuracy on unseen sentences: {before:.2f} before training, {accuracy():.2f} after")

with torch.no_grad():
    out = model.eval()(test_ids[:2], test_mask[:2])
print(
    "per-token states:", tuple(out.last_hidden_state.shape), "-> logits:", tuple(out.logits.shape)
)
for example, p in zip(data.validation[:2], torch.softmax(out.logits, -1)):
    print(f"  {example['text']!r}: " + ", ".join(f"{l} {v:.2f}" for l, v in zip(labels, p)))
