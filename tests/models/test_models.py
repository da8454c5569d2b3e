"""The three model families on tiny configs: shapes, gradients to every parameter, training
steps that lower the loss, presets, padding masks, input checks and ``Intermediates``."""

import pytest
import torch
import torch.nn.functional as F

from atenea import masks
from atenea.attention.masks import Dense, KeyPadding
from atenea.models import (
    DecoderConfig,
    DecoderModel,
    EncoderConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderModel,
    Intermediates,
    mean_pool,
)
from atenea.nn import AttentionRecord
from tests.helpers import max_error
from tests.models.tiny import VOCAB, padded_batch, randomize

# A probability (at most 1) reached by two float32 routes (a record's weights rebuilt from its
# q, k and mask; the model's own softmax) may differ in its last bits: 1.2e-7 (one unit at 1.0)
# on some CPUs. A wrong row, head or mask is off by far more.
ULPS = 4 * torch.finfo(torch.float32).eps

B, L = 2, 11  # padded_batch's sizes


def encoder_config(**overrides):
    values = dict(vocab_size=VOCAB, dim=48, num_heads=6, ffn_hidden=40, max_positions=16)
    return EncoderConfig.from_name("bert-tiny", **{**values, **overrides})


def decoder_config(name, **overrides):
    values = dict(vocab_size=VOCAB, max_positions=16)
    if name == "llama-tiny":
        values.update(dim=48, num_heads=6, num_kv_heads=2)
    return DecoderConfig.from_name(name, **{**values, **overrides})


def seq2seq_config(**overrides):
    values = dict(src_vocab_size=VOCAB, tgt_vocab_size=89, dim=48, num_heads=6, max_positions=16)
    return EncoderDecoderConfig.from_name("transformer-tiny", **{**values, **overrides})


def source_target(seed=0):
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(3, VOCAB, (B, 9), generator=generator)
    src_mask = torch.ones_like(src)
    src_mask[1, 5:] = 0
    tgt = torch.randint(3, 89, (B, 7), generator=generator)
    return src, src_mask, tgt


# -- shapes and gradients ------------------------------------------------------------------


def run_encoder(model):
    ids, mask = padded_batch("right")
    out = model(ids, mask)
    assert out.last_hidden_state.shape == (B, L, 48) and out.pooled.shape == (B, 48)
    return out.last_hidden_state[mask.bool()].square().mean() + out.pooled.sum()


def run_mlm(model):
    ids, mask = padded_batch("right")
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    out = model(ids.masked_fill(labels != -100, 1), mask, labels=labels)
    assert out.logits.shape == (B, L, VOCAB) and out.loss.shape == ()
    return out.loss


def run_classifier(model):
    ids, mask = padded_batch("right")
    out = model(ids, mask, labels=torch.tensor([2, 0]))
    assert out.logits.shape == (B, 3)
    return out.loss


def run_decoder(model):
    ids, mask = padded_batch("left")
    out = model(ids, mask, labels=ids.masked_fill(mask == 0, -100))
    assert out.logits.shape == (B, L, VOCAB) and out.last_hidden_state.shape[:2] == (B, L)
    return out.loss


def run_seq2seq(model):
    src, src_mask, tgt = source_target()
    out = model(src, tgt, src_mask, labels=tgt.roll(-1, 1))
    assert out.logits.shape == (B, 7, 89) and out.encoder_last_hidden_state.shape == (B, 9, 48)
    return out.loss


def run_seq2seq_shared(model):
    src, src_mask, _ = source_target()
    tgt = src[:, :7].flip(1)  # one vocabulary for both sides
    out = model(src, tgt, src_mask, labels=tgt.roll(-1, 1))
    assert out.logits.shape == (B, 7, VOCAB)
    return out.loss


MODELS = {
    "encoder_post": (lambda: EncoderModel(encoder_config()), run_encoder),
    "encoder_pre_sinusoidal": (
        lambda: EncoderModel(encoder_config(norm_position="pre", positions="sinusoidal")),
        run_encoder,
    ),
    "masked_lm": (lambda: EncoderForMaskedLM(encoder_config(pooler=False)), run_mlm),
    "classifier_cls": (
        lambda: EncoderForSequenceClassification(encoder_config(), 3),
        run_classifier,
    ),
    "classifier_mean": (
        lambda: EncoderForSequenceClassification(encoder_config(pooler=False), 3, "mean"),
        run_classifier,
    ),
    "gpt2": (lambda: DecoderModel(decoder_config("gpt2-tiny")), run_decoder),
    "llama": (lambda: DecoderModel(decoder_config("llama-tiny")), run_decoder),
    "transformer_post": (lambda: EncoderDecoderModel(seq2seq_config()), run_seq2seq),
    "transformer_pre_shared": (
        lambda: EncoderDecoderModel(
            seq2seq_config(
                tgt_vocab_size=VOCAB, share_embeddings=True, tie_output=False, norm_position="pre"
            )
        ),
        run_seq2seq_shared,
    ),
}


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    build, run = MODELS[name]
    model = build().train()  # dropout on: the gradients must survive it too
    loss = run(model)
    assert torch.isfinite(loss)
    loss.backward()
    for label, p in model.named_parameters():
        assert p.grad is not None, label
        assert torch.isfinite(p.grad).all(), label
        assert p.grad.abs().max() > 0, label


@pytest.mark.parametrize("name", ["masked_lm", "classifier_cls", "classifier_mean"])
def test_training_steps_lower_the_loss(name):
    build, run = MODELS[name]
    model = build()
    model.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, torch.nn.Dropout) else None)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss = run(model)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_decoder_loss_is_next_token_cross_entropy():
    model = randomize(DecoderModel(decoder_config("gpt2-tiny"))).eval()
    ids, mask = padded_batch("left")
    labels = ids.masked_fill(mask == 0, -100)
    out = model(ids, mask, labels=labels)
    expected = F.cross_entropy(
        out.logits[:, :-1][mask[:, 1:].bool()], ids[:, 1:][mask[:, 1:].bool()]
    )
    assert max_error(out.loss, expected) < 1e-6
    kept = model(ids, mask, logits_to_keep=3).logits
    assert kept.shape == (B, 3, VOCAB) and max_error(kept, out.logits[:, -3:]) < 1e-6


def test_mean_pool_ignores_padding():
    hidden = torch.randn(B, L, 5)
    _, mask = padded_batch("right")
    pooled = mean_pool(hidden, mask)
    assert max_error(pooled[1], hidden[1, :7].mean(0)) < 1e-6
    assert max_error(mean_pool(hidden, None), hidden.mean(1)) < 1e-6


@torch.no_grad()
def test_encoder_ignores_its_padding_and_decoder_its_left_padding():
    ids, mask = padded_batch("right")
    encoder = randomize(EncoderModel(encoder_config())).eval()
    out = encoder(ids, mask).last_hidden_state
    other = ids.clone()
    other[1, 7:] = 5  # different tokens under the padding
    assert torch.equal(encoder(other, mask).last_hidden_state[1, :7], out[1, :7])
    alone = encoder(ids[1:, :7]).last_hidden_state
    assert max_error(alone[0], out[1, :7]) < 1e-5
    ids, mask = padded_batch("left")
    decoder = randomize(DecoderModel(decoder_config("gpt2-tiny"))).eval()
    out = decoder(ids, mask).logits
    alone = decoder(ids[1:, 4:]).logits  # the same row, unpadded: same positions 0..6
    assert max_error(alone[0], out[1, 4:]) < 1e-5


@torch.no_grad()
def test_encoder_decoder_reads_the_source_but_not_its_padding():
    model = randomize(EncoderDecoderModel(seq2seq_config())).eval()
    src, src_mask, tgt = source_target()
    logits = model(src, tgt, src_mask).logits
    changed = src.clone()
    changed[1, 5:] = 4  # padding
    assert torch.equal(model(changed, tgt, src_mask).logits, logits)
    changed[1, 2] = (src[1, 2] + 1) % VOCAB  # a real token
    assert max_error(model(changed, tgt, src_mask).logits[1], logits[1]) > 1e-3
    assert torch.equal(model(changed, tgt, src_mask).logits[0], logits[0])  # rows independent


# -- presets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_class, name, model_class, dim",
    [
        (EncoderConfig, "bert-tiny", EncoderModel, 128),
        (EncoderConfig, "minilm-l6", EncoderModel, 384),
        (DecoderConfig, "gpt2-tiny", DecoderModel, 64),
        (DecoderConfig, "llama-tiny", DecoderModel, 64),
        (EncoderDecoderConfig, "transformer-tiny", EncoderDecoderModel, 64),
    ],
)
@torch.no_grad()
def test_presets_build_and_run(config_class, name, model_class, dim):
    assert name in config_class.presets()
    config = config_class.from_name(name)
    assert config.dim == dim
    model = model_class(config).eval()
    ids = torch.randint(3, 100, (B, 5))
    out = model(ids, ids) if model_class is EncoderDecoderModel else model(ids)
    assert out.last_hidden_state.shape == (B, 5, dim)
    overridden = config_class.from_name(name, num_heads=8)
    assert overridden.num_heads == 8 and config.num_heads != 8


def test_llama_tiny_preset_is_llama_shaped():
    model = DecoderModel(DecoderConfig.from_name("llama-tiny"))
    attention = model.layers[0].attention
    assert attention.num_kv_heads == 2 and attention.num_heads == 4
    assert attention.q_proj.bias is None and model.lm_head is not None
    assert model.rotary is not None and model.position_embedding is None


@pytest.mark.parametrize("config_class", [EncoderConfig, DecoderConfig, EncoderDecoderConfig])
def test_from_name_rejects_unknown_names_and_fields(config_class):
    with pytest.raises(ValueError, match=rf"{config_class.__name__}: unknown preset 'bert-huge'"):
        config_class.from_name("bert-huge")
    name = config_class.presets()[0]
    with pytest.raises(ValueError, match="unknown fields depth, widht"):
        config_class.from_name(name, widht=3, depth=2)


# -- padding masks -------------------------------------------------------------------------


def test_from_attention_mask_kinds():
    right = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    left = right.flip(-1)
    holes = torch.tensor([[1, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert masks.from_attention_mask(None) is None
    assert masks.from_attention_mask(torch.ones(2, 5, dtype=torch.long)) is None
    for attention_mask, side in ((right, "right"), (left, "left")):
        mask = masks.from_attention_mask(attention_mask)
        assert isinstance(mask, KeyPadding) and mask.side == side
        allowed = mask.materialize(3, 5)
        assert torch.equal(allowed, attention_mask.bool()[:, None, None, :].expand(2, 1, 3, 5))
    mask = masks.from_attention_mask(holes)
    assert isinstance(mask, Dense)
    assert torch.equal(mask.materialize(3, 5)[:, 0, 0], holes.bool())
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(B, L\)"):
        masks.from_attention_mask(torch.ones(2, 1, 5))


# -- input checks --------------------------------------------------------------------------

BAD_IDS = [
    (
        torch.tensor([[1, 2, VOCAB]]),
        ValueError,
        rf"input_ids: token ids must lie in \[0, {VOCAB}\)",
    ),
    (torch.tensor([[1, -1, 2]]), ValueError, r"got values from -1 to 2"),
    (
        torch.tensor([[1.0, 2.0]]),
        TypeError,
        "input_ids: expected integer token ids, got dtype torch.float32",
    ),
    (torch.tensor([1, 2, 3]), ValueError, r"input_ids: expected shape \(B, L\), got \(3,\)"),
    ([[1, 2, 3]], TypeError, "input_ids: expected a \\(B, L\\) tensor of token ids, got list"),
]


@pytest.mark.parametrize("ids, error, pattern", BAD_IDS)
@pytest.mark.parametrize(
    "build",
    [
        lambda: EncoderModel(encoder_config()),
        lambda: DecoderModel(decoder_config("llama-tiny")),
        lambda: EncoderForMaskedLM(encoder_config()),
    ],
    ids=["encoder", "decoder", "masked_lm"],
)
def test_bad_input_ids(build, ids, error, pattern):
    with pytest.raises(error, match=pattern):
        build()(ids)


def test_bad_encoder_decoder_ids():
    model = EncoderDecoderModel(seq2seq_config())
    src, _, tgt = source_target()
    with pytest.raises(ValueError, match=r"src_ids: token ids must lie in \[0, 97\)"):
        model(src + VOCAB, tgt)
    with pytest.raises(ValueError, match=r"tgt_ids: token ids must lie in \[0, 89\)"):
        model(src, tgt + 89)


def test_attention_mask_must_match_the_ids():
    model = EncoderModel(encoder_config())
    with pytest.raises(
        ValueError, match=r"attention_mask: expected the shape of input_ids \(2, 5\)"
    ):
        model(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))


def test_too_long_inputs():
    too_long = torch.ones(1, 17, dtype=torch.long)
    with pytest.raises(
        ValueError, match="input_ids: 17 tokens, but this model has positions for at most 16"
    ):
        EncoderModel(encoder_config())(too_long)
    with pytest.raises(ValueError, match=r"positions 0\.\.15, got position 16"):
        DecoderModel(decoder_config("gpt2-tiny"))(too_long)


# -- intermediates -------------------------------------------------------------------------


@torch.no_grad()
def test_intermediates_hold_one_record_per_layer():
    model = randomize(DecoderModel(decoder_config("llama-tiny", num_layers=3))).eval()
    ids, mask = padded_batch("left")
    inter = Intermediates(keep_hidden_states=True)
    out = model(ids, mask, output_attentions=True, intermediates=inter)
    assert out.intermediates is inter
    assert len(inter.attention) == 3 and all(
        isinstance(r, AttentionRecord) for r in inter.attention
    )
    assert len(out.attentions) == 3 and out.attentions[0].shape == (B, 6, L, L)
    for record, weights in zip(inter.attention, out.attentions):
        assert torch.equal(record.weights(), weights)
        # Other rows, other matrix shapes: a float32 product may round the last bit differently
        # (weights are <= 1, so 3e-7 is two or three units in the last place).
        rows, heads = [10, 3, 7], [5, 0]
        assert (
            max_error(record.weights(rows=rows, heads=heads), weights[:, heads][:, :, rows]) < 3e-7
        )
        assert max_error(record.weights(rows=slice(4, None), heads=1), weights[:, 1:2, 4:]) < 3e-7
    assert len(inter.hidden_states) == 4 and torch.equal(
        inter.hidden_states[-1], out.last_hidden_state
    )
    # the rows of real tokens sum to 1, causal: nothing above the diagonal
    real = mask.bool()
    sums = out.attentions[1].sum(-1).transpose(1, 2)[real]
    assert max_error(sums, torch.ones_like(sums)) < 1e-5
    assert out.attentions[2].triu(1).abs().max() == 0
    # and without asking, nothing is recorded
    plain = model(ids, mask)
    assert plain.attentions is None and plain.intermediates is None and plain.hidden_states is None
    assert torch.equal(plain.logits, out.logits)


@torch.no_grad()
def test_encoder_intermediates_and_hidden_states():
    model = randomize(EncoderModel(encoder_config())).eval()
    ids, mask = padded_batch("right")
    inter = Intermediates()
    out = model(ids, mask, output_hidden_states=True, intermediates=inter)
    assert len(inter.attention) == 2 and len(out.hidden_states) == 3
    weights = inter.attentions()
    assert weights[0].shape == (B, 6, L, L)
    assert (weights[0][1, :, :, 7:] == 0).all()  # padded keys
    assert max_error(inter.attention[1].weights(rows=[0], heads=[2]), weights[1][:, 2:3, :1]) < ULPS


@torch.no_grad()
def test_encoder_decoder_intermediates():
    model = randomize(EncoderDecoderModel(seq2seq_config(num_decoder_layers=3))).eval()
    src, src_mask, tgt = source_target()
    inter = Intermediates()
    out = model(src, tgt, src_mask, output_attentions=True, intermediates=inter)
    assert len(inter.encoder_attention) == 2 and len(out.encoder_attentions) == 2
    assert len(inter.attention) == 3 and len(inter.cross_attention) == 3
    assert out.attentions[0].shape == (B, 6, 7, 7)
    assert out.cross_attentions[0].shape == (B, 6, 7, 9)
    assert out.encoder_attentions[0].shape == (B, 6, 9, 9)
    assert (out.cross_attentions[2][1, ..., 5:] == 0).all()  # padded source positions
    for record, weights in zip(inter.cross_attention, out.cross_attentions):
        assert (
            max_error(record.weights(rows=[6, 1], heads=[3]), weights[:, 3:4][:, :, [6, 1]]) < ULPS
        )


def test_a_config_s_block_fields_reach_every_block():
    # Each model config hands its block fields (same names as BlockConfig) to its blocks; what a
    # family fixes itself (BERT's post-norm LayerNorm with biases, decoders' pre-norm) wins.
    decoder = DecoderModel(
        DecoderConfig.from_name("llama-tiny", num_kv_heads=1, norm_eps=1e-3, attention_dropout=0.25)
    )
    for block in decoder.layers:
        assert block.attention.num_kv_heads == 1 and block.attention.dropout == 0.25
        assert block.attention_norm.eps == 1e-3 and block.config.norm_position == "pre"
    encoder = EncoderModel(EncoderConfig.from_name("bert-tiny", norm_position="pre", dropout=0.0))
    assert encoder.layers[0].config.norm_position == "pre" and encoder.layers[0].dropout.p == 0.0
    assert encoder.layers[0].attention.q_proj.bias is not None  # BERT keeps its biases
    seq2seq = EncoderDecoderModel(EncoderDecoderConfig.from_name("transformer-tiny", ffn_hidden=96))
    assert seq2seq.decoder_layers[0].cross_attention is not None
    assert seq2seq.encoder_layers[0].cross_attention is None
    assert all(block.feed_forward.up.out_features == 96 for block in seq2seq.decoder_layers)
