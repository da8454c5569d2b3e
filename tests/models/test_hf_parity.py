"""Hugging Face parity: a tiny ``transformers`` model with random weights, saved with its own
``save_pretrained`` and read by ``atenea.load_pretrained``, gives the same logits / hidden
states and the same attention weights (``output_attentions``, eager attention) on a padded
batch, in float32. Padding is right for BERT and left for the decoders (batched generation);
only real tokens (query rows) are compared."""

import pytest
import torch
import transformers

import atenea
from atenea.models import (
    DecoderModel,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderModel,
)
from tests.helpers import max_error
from tests.models.tiny import (
    LLAMA3_ROPE,
    bert_config,
    gpt2_config,
    hf_positions,
    llama_config,
    padded_batch,
    randomize,
)

TOLERANCE = 1e-4


def _save(hf_model, folder):
    randomize(hf_model).eval()
    hf_model.save_pretrained(folder)
    model, tokenizer = atenea.load_pretrained(folder)
    assert tokenizer is None  # no tokenizer.json in the folder
    assert not model.training
    return hf_model, model


def _assert_attentions(hf_attentions, ours, mask, layers):
    real = mask.bool()
    assert hf_attentions is not None and len(hf_attentions) == len(ours) == layers
    for expected, actual in zip(hf_attentions, ours):
        assert actual.shape == expected.shape
        # (B, H, Lq, Lk) -> (real query rows, H, Lk)
        assert max_error(actual.transpose(1, 2)[real], expected.transpose(1, 2)[real]) < TOLERANCE
        # the second row's padded keys get no weight from its real queries
        assert actual[1][:, real[1]][..., ~real[1]].abs().max() == 0


BERT_CASES = {
    "BertModel": (transformers.BertModel, {}, EncoderModel),
    "BertForMaskedLM": (transformers.BertForMaskedLM, {}, EncoderForMaskedLM),
    "BertForSequenceClassification": (
        transformers.BertForSequenceClassification,
        {"num_labels": 3},
        EncoderForSequenceClassification,
    ),
}


@pytest.mark.parametrize("case", BERT_CASES)
def test_bert_matches_transformers(case, tmp_path):
    hf_class, overrides, our_class = BERT_CASES[case]
    hf_model, model = _save(hf_class(bert_config(**overrides)), tmp_path)
    assert type(model) is our_class
    ids, mask = padded_batch("right")
    segments = torch.zeros_like(ids)
    segments[:, 5:] = 1  # sentence B: the segment embedding must be read too
    with torch.no_grad():
        expected = hf_model(
            input_ids=ids, attention_mask=mask, token_type_ids=segments, output_attentions=True
        )
        out = model(ids, mask, segments, output_attentions=True)
    real = mask.bool()
    if case == "BertModel":
        assert out.last_hidden_state.shape == (2, 11, 48)
        assert max_error(out.last_hidden_state[real], expected.last_hidden_state[real]) < TOLERANCE
        assert max_error(out.pooled, expected.pooler_output) < TOLERANCE
    elif case == "BertForMaskedLM":
        assert out.logits.shape == (2, 11, 97)
        assert max_error(out.logits[real], expected.logits[real]) < TOLERANCE
    else:
        assert out.logits.shape == (2, 3)
        assert max_error(out.logits, expected.logits) < TOLERANCE
    _assert_attentions(expected.attentions, out.attentions, mask, layers=2)


DECODER_CASES = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(gpt2_config()),
    "gpt2_n_inner": lambda: transformers.GPT2LMHeadModel(gpt2_config(n_inner=40)),
    # its own output matrix in the file: read, not replaced by the token embedding
    "gpt2_untied": lambda: transformers.GPT2LMHeadModel(gpt2_config(tie_word_embeddings=False)),
    "llama_gqa": lambda: transformers.LlamaForCausalLM(llama_config()),
    "llama_head_dim_bias": lambda: transformers.LlamaForCausalLM(
        llama_config(head_dim=12, attention_bias=True, mlp_bias=True)
    ),
    "llama3_rope": lambda: transformers.LlamaForCausalLM(
        llama_config(rope_parameters=dict(LLAMA3_ROPE))
    ),
}


@pytest.mark.parametrize("case", DECODER_CASES)
def test_decoder_matches_transformers_left_padded(case, tmp_path):
    hf_model, model = _save(DECODER_CASES[case](), tmp_path)
    assert type(model) is DecoderModel
    c = model.config
    if case == "gpt2_n_inner":
        assert c.ffn_hidden == 40
    elif case == "gpt2":
        assert c.ffn_hidden == 4 * 48 and c.tie_embeddings
    elif case == "gpt2_untied":
        assert not c.tie_embeddings and model.lm_head is not None
    elif case == "llama_gqa":
        assert (c.num_heads, c.num_kv_heads, c.rope_scaling) == (6, 2, None)
    elif case == "llama_head_dim_bias":
        assert c.resolved_head_dim == 12 and c.bias
    else:
        assert c.rope_theta == 500000.0
        assert c.rope_scaling["rope_type"] == "llama3" and c.rope_scaling["factor"] == 8.0
    ids, mask = padded_batch("left")
    with torch.no_grad():
        expected = hf_model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=hf_positions(mask),
            output_attentions=True,
        )
        out = model(ids, mask, output_attentions=True)  # positions counted from the mask
    real = mask.bool()
    assert out.logits.shape == (2, 11, 97)
    assert max_error(out.logits[real], expected.logits[real]) < TOLERANCE
    _assert_attentions(expected.attentions, out.attentions, mask, layers=2)


def test_llama3_scaling_changes_the_output(tmp_path):
    """The llama3 case above can only pass by applying the scaling: without it, with the same
    weights, the logits differ (positions beyond 16 / factor are slowed down)."""
    hf_model, model = _save(
        transformers.LlamaForCausalLM(llama_config(rope_parameters=dict(LLAMA3_ROPE))), tmp_path
    )
    plain = DecoderModel(
        atenea.models.DecoderConfig(**{**vars(model.config), "rope_scaling": None})
    ).eval()
    plain.load_state_dict(model.state_dict())
    ids, mask = padded_batch("left")
    with torch.no_grad():
        assert max_error(plain(ids, mask).logits, model(ids, mask).logits) > 1e-2
