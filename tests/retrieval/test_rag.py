"""In-context retrieval: the scored tokens are the document's own, the same with and without
passages, and the score is the model's log-likelihood of them."""

import math

import pytest
import torch

from atenea.models import DecoderConfig, DecoderModel
from atenea.retrieval import CorpusError
from atenea.retrieval.rag import document_nll, in_context_perplexity


class CharTokenizer:
    """One id per character (ids 3..), enough to drive the function without a trained one."""

    def encode(self, text, add_special_tokens=True):
        return [3 + (ord(c) % 50) for c in text]


def tiny_lm():
    config = DecoderConfig.from_name("gpt2-tiny", vocab_size=53, dim=32, num_layers=2,
                                     num_heads=2, ffn_hidden=48, eos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    return DecoderModel(config).double().eval()


def test_document_nll_is_the_log_likelihood_of_the_documents_tokens():
    model = tiny_lm()
    context, document = [5, 6, 7], [8, 9, 10, 11]
    nll, scored = document_nll(model, context, document)
    with torch.no_grad():
        log_probs = model(torch.tensor([context + document])).logits[0].log_softmax(-1)
    # tokens 9, 10, 11 (positions 4, 5, 6) predicted at positions 3, 4, 5
    hand = -sum(float(log_probs[3 + i, token]) for i, token in enumerate([9, 10, 11]))
    assert scored == 3 and nll == pytest.approx(hand, rel=1e-12)


def test_no_passages_changes_nothing_and_passages_change_the_score():
    model, tokenizer = tiny_lm(), CharTokenizer()
    documents = ["a cat sat on the mat", "the dog ran"]
    empty = in_context_perplexity(model, tokenizer, documents, [[], []], max_length=64)
    assert empty["perplexity_with_passages"] == empty["perplexity_without"]
    assert empty["tokens"] == len(documents[0]) - 1 + len(documents[1]) - 1
    passages = [["cats sit on mats", "a mat"], ["dogs run"]]
    scored = in_context_perplexity(model, tokenizer, documents, passages, max_length=64)
    assert scored["tokens"] == empty["tokens"]
    assert scored["perplexity_without"] == empty["perplexity_without"]
    assert not math.isclose(scored["perplexity_with_passages"], scored["perplexity_without"])
    with pytest.raises(CorpusError, match="passages: expected one list per document"):
        in_context_perplexity(model, tokenizer, documents, [[]], max_length=64)
