"""Per-token inputs beside ``input_ids`` (segments, positions, labels) and a cache made for
another batch: each wrong one is a one-line ``ValueError`` naming it, not an ``IndexError``
from an embedding table or a shape error from deep inside a layer."""

import pytest
import torch

from atenea.models import (
    DecoderConfig,
    DecoderModel,
    EncoderConfig,
    EncoderDecoderConfig,
    EncoderModel,
    RNNConfig,
    ViTConfig,
)

VOCAB = 50
IDS = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def bert():
    return EncoderModel(EncoderConfig.from_name("bert-tiny", vocab_size=VOCAB)).eval()


@pytest.fixture(scope="module", params=["llama-tiny", "gpt2-tiny"])
def decoder(request):
    return DecoderModel(DecoderConfig.from_name(request.param, vocab_size=VOCAB)).eval()


@pytest.mark.parametrize(
    "segments, pattern",
    [
        (torch.full((2, 7), 5), r"token_type_ids: segment ids must lie in \[0, 2\) for this "
                                r"model's type_vocab_size, got values from 5 to 5"),
        (torch.zeros(2, 3, dtype=torch.long), r"token_type_ids: expected the shape of input_ids "
                                              r"\(2, 7\) \(0 = sentence A, 1 = B\), got \(2, 3\)"),
    ],
)  # fmt: skip
def test_bad_segments(bert, segments, pattern):
    with pytest.raises(ValueError, match=pattern):
        bert(IDS, None, segments)


def test_good_segments_still_count(bert):
    with torch.no_grad():
        a, b = bert(IDS).last_hidden_state, bert(IDS, None, torch.ones_like(IDS)).last_hidden_state
    assert (a - b).abs().max() > 1e-3  # sentence B's embedding was added


def test_bad_labels_and_positions(decoder):
    with pytest.raises(ValueError, match=r"labels: expected the shape of input_ids \(2, 7\)"):
        decoder(IDS, labels=IDS[:, :3])
    with pytest.raises(ValueError, match=r"position_ids: expected the shape of input_ids"):
        decoder(IDS, position_ids=torch.arange(3))


def test_learned_positions_past_the_table(decoder):
    beyond = torch.full_like(IDS, decoder.config.max_positions)
    if decoder.config.positions == "learned":
        with pytest.raises(ValueError, match=r"position_ids: positions must lie in \[0, \d+\) for "
                                             r"this model's max_positions"):  # fmt: skip
            decoder(IDS, position_ids=beyond)
    else:  # rotary positions have no table: any position turns the vectors
        assert torch.isfinite(decoder(IDS, position_ids=beyond).logits).all()


def test_a_cache_made_for_another_batch(decoder):
    with pytest.raises(ValueError, match=r"cache: made for a batch of 3 rows, the input has 2; "
                                         r"make one with new_cache\(2, capacity\)"):  # fmt: skip
        decoder(IDS, cache=decoder.new_cache(3, 20))


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: EncoderConfig.from_name("bert-tiny", num_layers=-1),
         r"num_layers: expected an integer >= 1, got -1"),
        (lambda: DecoderConfig.from_name("gpt2-tiny", dim=0), r"dim: expected an integer >= 1"),
        (lambda: DecoderConfig.from_name("gpt2-tiny", num_heads=2.5), r"num_heads: .* got 2.5"),
        (lambda: EncoderConfig(dropout=1.0), r"dropout: expected a probability in \[0, 1\)"),
        (lambda: EncoderDecoderConfig(num_decoder_layers=0), "num_decoder_layers: expected"),
        (lambda: ViTConfig(patch_size=0), "patch_size: expected an integer >= 1, got 0"),
        (lambda: RNNConfig(tgt_vocab_size=0), "tgt_vocab_size: expected an integer >= 1"),
    ],
)  # fmt: skip
def test_a_config_refuses_sizes_a_model_cannot_have(make, pattern):
    """``--set num_layers=-1`` built a model of no layers that trained and saved, and failed
    later in another command (an IndexError in explain)."""
    with pytest.raises(ValueError, match=pattern):
        make()
