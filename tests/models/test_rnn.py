"""RNNSearch and RNNEncDec: the alignment model against its formulas, the decoder step against
the paper's equations written out by hand, gradients, padding, cached decoding, generation,
checkpoints."""

import pytest
import torch
from torch.func import functional_call

import atenea
from atenea.models import RNNConfig, RNNEncDec, RNNSearch, load_pretrained, save_pretrained
from atenea.nn import Alignment

B, S, DQ, DK, A = 3, 7, 6, 5, 4  # distinct sizes: a transposition fails


def tiny_config(**changes) -> RNNConfig:
    sizes = dict(src_vocab_size=23, tgt_vocab_size=19, embedding_dim=5, hidden_dim=6,
                 alignment_dim=7, maxout_dim=4)  # fmt: skip
    return RNNConfig(**{**sizes, **changes})


def double(model):
    """float64, eval mode, and weights of a trained model's scale: the paper's N(0, 0.01^2)
    start keeps every state near 0, where a wrong equation would hide in the 8th digit."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.3)
    return model.double().eval()


def source_batch(lengths, length=None, vocab=23, left=False):
    """Random ids ``(B, S)`` (no special tokens) and a mask with ``lengths`` tokens per row,
    padded on the right (or the left)."""
    length = length or max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), length))
    mask = torch.zeros(len(lengths), length, dtype=torch.long)
    for row, n in enumerate(lengths):
        if left:
            mask[row, length - n :] = 1
        else:
            mask[row, :n] = 1
    return ids * mask, mask


# -- the alignment model ------------------------------------------------------------------------


def test_alignment_scores_match_their_formulas_and_padding_gets_exactly_zero():
    query, keys = (
        torch.randn(B, DQ, dtype=torch.float64),
        torch.randn(B, S, DK, dtype=torch.float64),
    )
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, :2] = False
    square_keys = torch.randn(B, S, DQ, dtype=torch.float64)
    for score in ("additive", "dot", "general"):
        module = Alignment(DQ, DQ if score == "dot" else DK, A, score=score).double()
        k = square_keys if score == "dot" else keys
        if score == "additive":
            a = module.additive
            hidden = torch.tanh(
                (query @ a.query_proj.weight.T)[:, None] + k @ a.key_proj.weight.T + a.key_proj.bias
            )
            energies = (hidden @ a.score.weight.T)[..., 0]
        elif score == "dot":
            energies = torch.einsum("bd,bsd->bs", query, k)
        else:
            energies = torch.einsum("bd,de,bse->bs", query, module.general.weight, k)
        expected = torch.softmax(energies.masked_fill(~mask, float("-inf")), dim=-1)
        context, weights = module(query, k, mask)
        assert torch.allclose(weights, expected, atol=1e-12, rtol=0), score
        assert torch.allclose(context, torch.einsum("bs,bsd->bd", expected, k), atol=1e-12), score
        assert (weights[~mask] == 0).all(), score  # exactly zero, not just small
        # the prepared keys give the same result
        again, _ = module(query, k, mask, prepared=module.prepare(k))
        assert torch.equal(again, context)


def test_alignment_refuses_bad_settings():
    with pytest.raises(ValueError, match="score"):
        Alignment(DQ, DK, A, score="cosine")
    with pytest.raises(ValueError, match="query_dim must equal"):
        Alignment(DQ, DK, A, score="dot")
    with pytest.raises(ValueError, match="dot"):
        RNNSearch(tiny_config(score="dot"))  # decoder 6 wide, annotations 12
    RNNSearch(tiny_config(score="dot", decoder_dim=12))  # the widths Luong's dot needs
    with pytest.raises(ValueError, match="output"):
        tiny_config(output="softmax")


def test_alignment_gradients():
    query = torch.randn(2, DQ, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(2, 4, DK, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    for score in ("additive", "general"):
        module = Alignment(DQ, DK, A, score=score).double()
        assert torch.autograd.gradcheck(lambda q, k, m=module: m(q, k, mask), (query, keys))


# -- the models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RNNSearch, RNNEncDec])
def test_gradients_of_the_whole_model(cls):
    """gradcheck through encoder, alignment, decoder cell and maxout output, in float64, with
    respect to the decoder's and the alignment's parameters and the encoder's recurrences."""
    model = double(cls(tiny_config(hidden_dim=3, embedding_dim=2, alignment_dim=3, maxout_dim=2)))
    src, src_mask = source_batch([4, 2], vocab=23)
    tgt = torch.randint(3, 19, (2, 3))
    names = [n for n, _ in model.named_parameters()
             if n.startswith(("cell.", "alignment.", "readout.", "init_state.", "encoder.weight_hh"))]  # fmt: skip
    params = dict(model.named_parameters())
    chosen = tuple(params[n].detach().clone().requires_grad_() for n in names)

    def logits(*values):
        return functional_call(model, {**params, **dict(zip(names, values))},
                               (src, tgt, src_mask)).logits  # fmt: skip

    assert torch.autograd.gradcheck(logits, chosen)


def hand_gru_step(cell, embedded, state, context):
    """The paper's decoder GRU (Appendix A.2.2), from the weights, one equation per line."""
    W_z, W_r, W = cell.input_proj.weight.chunk(3)
    b_z, b_r, b = cell.input_proj.bias.chunk(3)
    C_z, C_r, C = cell.context_proj.weight.chunk(3)
    U_z, U_r = cell.gate_proj.weight.chunk(2)
    U = cell.candidate_proj.weight
    z = torch.sigmoid(embedded @ W_z.T + b_z + state @ U_z.T + context @ C_z.T)
    r = torch.sigmoid(embedded @ W_r.T + b_r + state @ U_r.T + context @ C_r.T)
    candidate = torch.tanh(embedded @ W.T + b + (r * state) @ U.T + context @ C.T)
    return (1 - z) * state + z * candidate


class MeanContext(torch.nn.Module):
    """An alignment that gives every source token the same weight: the context is the mean."""

    def prepare(self, keys):
        return keys

    def forward(self, query, keys, mask, prepared=None):
        weights = mask.double() / mask.sum(-1, keepdim=True)
        return (weights[:, None] @ keys)[:, 0], weights


def test_rnnsearch_with_the_mean_as_context_is_a_hand_written_gru():
    model = double(RNNSearch(tiny_config()))
    model.alignment = MeanContext()
    src, src_mask = source_batch([5, 3], vocab=23)
    tgt = torch.randint(3, 19, (2, 4))
    out = model(src, tgt, src_mask)
    memory = model.encode(src, src_mask)
    mean = (memory * src_mask[..., None]).sum(1) / src_mask.sum(1, keepdim=True)
    # s_0 = tanh(W_s h<-_1): the backward GRU's state at the first token
    state = torch.tanh(model.init_state(memory[:, 0, model.config.hidden_dim :]))
    embedded = model.target_embedding(tgt)
    for step in range(tgt.shape[1]):
        state = hand_gru_step(model.cell, embedded[:, step], state, mean)
        assert torch.allclose(out.last_hidden_state[:, step], state, atol=1e-12)
    # the deep output: W_o maxout(U_o s_i + V_o E y_{i-1} + C_o c_i) on the last step
    pre = (
        torch.cat([state, embedded[:, -1], mean], -1) @ model.readout.weight.T + model.readout.bias
    )
    maxout = torch.maximum(pre[:, 0::2], pre[:, 1::2])
    assert torch.allclose(out.logits[:, -1], model.output(maxout), atol=1e-12)


def test_rnnencdec_context_is_the_encoders_summary_at_every_step():
    model = double(RNNEncDec(tiny_config()))
    src, src_mask = source_batch([5, 3], vocab=23)
    tgt = torch.randint(3, 19, (2, 4))
    out = model(src, tgt, src_mask)
    memory, hidden = model.encode(src, src_mask), model.config.hidden_dim
    # the forward GRU after the last token, the backward one after the first
    summary = torch.stack([torch.cat([memory[b, n - 1, :hidden], memory[b, 0, hidden:]])
                           for b, n in enumerate([5, 3])])  # fmt: skip
    state = torch.tanh(model.init_state(summary))
    for step in range(tgt.shape[1]):
        state = hand_gru_step(model.cell, model.target_embedding(tgt)[:, step], state, summary)
        assert torch.allclose(out.last_hidden_state[:, step], state, atol=1e-12)


@pytest.mark.parametrize("cls", [RNNSearch, RNNEncDec])
def test_a_sentence_gives_the_same_result_in_any_batch(cls):
    model = double(cls(tiny_config()))
    src, src_mask = source_batch([4], vocab=23)
    tgt = torch.randint(3, 19, (1, 5))
    alone = model(src, tgt, output_attentions=True)
    for left in (False, True):
        others, others_mask = source_batch([9, 2], length=9, vocab=23, left=left)
        padded = torch.zeros(1, 9, dtype=torch.long)
        padded_mask = torch.zeros(1, 9, dtype=torch.long)
        where = slice(5, 9) if left else slice(0, 4)
        padded[0, where], padded_mask[0, where] = src[0], 1
        batch_src, batch_mask = torch.cat([others, padded]), torch.cat([others_mask, padded_mask])
        batch_tgt = torch.cat([torch.randint(3, 19, (2, 7)), torch.cat(
            [tgt, torch.zeros(1, 2, dtype=torch.long)], 1)])  # fmt: skip
        tgt_mask = torch.ones(3, 7, dtype=torch.long)
        tgt_mask[2, 5:] = 0
        out = model(batch_src, batch_tgt, batch_mask, tgt_mask, output_attentions=True)
        assert torch.allclose(out.logits[2, :5], alone.logits[0], atol=1e-12, rtol=0)
        if cls is RNNSearch:
            weights = out.cross_attentions[0][2, 0, :5]
            assert torch.allclose(weights[:, where], alone.cross_attentions[0][0, 0], atol=1e-12)
            assert (weights[:, batch_mask[2] == 0] == 0).all()


@pytest.mark.parametrize("cls", [RNNSearch, RNNEncDec])
def test_stepwise_decoding_on_the_cache_equals_teacher_forcing(cls):
    model = double(cls(tiny_config()))
    src, src_mask = source_batch([6, 3, 5], vocab=23)
    tgt = torch.randint(3, 19, (3, 6))
    forced = model(src, tgt, src_mask).logits
    memory = model.encode(src, src_mask)
    cache = model.new_cache()
    for step in range(tgt.shape[1]):
        logits, _ = model.decode(tgt[:, step : step + 1], memory, src_mask, cache=cache)
        assert torch.allclose(logits[:, 0], forced[:, step], atol=1e-12)
    # two tokens at a time, and the last one only (logits_to_keep)
    cache = model.new_cache()
    first, _ = model.decode(tgt[:, :4], memory, src_mask, cache=cache, logits_to_keep=1)
    rest, _ = model.decode(tgt[:, 4:], memory, src_mask, cache=cache)
    assert torch.allclose(first[:, 0], forced[:, 3], atol=1e-12)
    assert torch.allclose(rest, forced[:, 4:], atol=1e-12)


def sequence_log_prob(model, src, src_mask, sequence):
    """Sum of log p of the generated tokens after BOS (teacher forcing)."""
    logits = model(src, sequence[None, :-1], src_mask).logits[0].log_softmax(-1)
    return logits.gather(1, sequence[1:, None]).sum()


@pytest.mark.parametrize("cls", [RNNSearch, RNNEncDec])
def test_greedy_and_beam_search(cls):
    config = tiny_config(eos_token_id=2, bos_token_id=1, pad_token_id=0)
    model = double(cls(config))
    with torch.no_grad():  # a sharper output, so sequences end at EOS within the budget
        model.output.bias[2] += 1.0
    src, src_mask = source_batch([6, 3], vocab=23)
    greedy = atenea.generate(model, src, attention_mask=src_mask, max_new_tokens=8)
    assert (greedy[:, 0] == 1).all()
    # the cache (the decoder state) against recomputing every step from the start
    again = atenea.generate(model, src, attention_mask=src_mask, max_new_tokens=8, use_cache=False)
    assert torch.equal(greedy, again)
    # greedy: each token is the argmax of teacher-forced logits on what came before
    for row in range(2):
        seq = greedy[row]
        length = int((seq != 0).sum()) if (seq == 2).any() else len(seq)
        logits = model(src[row : row + 1], seq[None, : length - 1], src_mask[row : row + 1]).logits
        assert torch.equal(logits[0].argmax(-1), seq[1:length])
    one_beam = atenea.generate(model, src, attention_mask=src_mask, max_new_tokens=8, num_beams=1)
    assert torch.equal(one_beam, greedy)
    beams = atenea.generate(model, src, attention_mask=src_mask, max_new_tokens=8, num_beams=3,
                            return_beams=True, length_penalty=1.0)  # fmt: skip
    for row in range(2):
        for k in range(3):
            new = int(beams.lengths[row, k])
            seq = beams.beams[row, k, : 1 + new]
            total = sequence_log_prob(model, src[row : row + 1], src_mask[row : row + 1], seq)
            assert torch.isclose(beams.scores[row, k].double(), total / new, atol=1e-5)
        # the best beam scores at least as well as greedy's sequence
        seq = greedy[row]
        n = int((seq != 0).sum()) if (seq == 2).any() else len(seq)
        greedy_score = sequence_log_prob(
            model, src[row : row + 1], src_mask[row : row + 1], seq[:n]
        )
        assert beams.scores[row, 0] >= greedy_score / (n - 1) - 1e-5


@pytest.mark.parametrize("cls", [RNNSearch, RNNEncDec])
def test_save_and_load_round_trip(cls, tmp_path):
    model = cls(tiny_config(score="general", output="linear", dropout=0.1)).eval()
    src, src_mask = source_batch([5, 2], vocab=23)
    tgt = torch.randint(3, 19, (2, 4))
    save_pretrained(model, tmp_path / "m")
    loaded, tokenizer = load_pretrained(tmp_path / "m")
    assert type(loaded) is cls and tokenizer is None
    assert loaded.config == model.config
    assert torch.equal(loaded(src, tgt, src_mask).logits, model(src, tgt, src_mask).logits)


def test_bad_inputs_are_named():
    model = RNNSearch(tiny_config())
    src, tgt = torch.randint(3, 23, (2, 5)), torch.randint(3, 19, (2, 3))
    with pytest.raises(ValueError, match="src_ids"):
        model(src + 100, tgt)
    with pytest.raises(ValueError, match="tgt_ids"):
        model(src, tgt + 100)
    with pytest.raises(ValueError, match="attention_mask"):
        model(src, tgt, torch.ones(2, 4))
    with pytest.raises(ValueError, match="memory"):
        model.decode(tgt, torch.zeros(3, 5, 12))


def test_presets():
    paper = RNNConfig.from_name("rnnsearch-50")
    assert (paper.embedding_dim, paper.hidden_dim, paper.maxout_dim) == (620, 1000, 500)
    assert RNNConfig.presets() == ["rnnsearch-50", "rnnsearch-tiny"]
    tiny = RNNSearch(RNNConfig.from_name("rnnsearch-tiny"))
    assert sum(p.numel() for p in tiny.parameters()) < 1_000_000
