"""kNN-LM: the interpolated distribution against a hand computation on a three-entry datastore,
the datastore of a model's own texts, save / load, and its errors."""

import math

import pytest
import torch

from atenea.models import DecoderConfig, DecoderModel
from atenea.retrieval import CorpusError
from atenea.retrieval.knn import Datastore, evaluate_knn, interpolate


def test_interpolation_against_a_hand_computation():
    keys = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    store = Datastore(keys, torch.tensor([1, 2, 1]), "none")
    query = torch.tensor([[0.0, 0.0]])
    # k = 2: the keys at squared distances 0 and 1 (values 1, 2), weights softmax(-[0, 1]).
    near, far = 1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))
    knn = store.log_probs(query, vocab_size=4, k=2).exp()
    torch.testing.assert_close(knn, torch.tensor([[0.0, near, far, 0.0]]))
    # temperature 2 halves the distances: softmax(-[0, 0.5]); k = 3 adds value 1 at distance 4.
    weights = [math.exp(-d / 2) for d in (0, 1, 4)]
    total = sum(weights)
    knn3 = store.log_probs(query, vocab_size=4, k=3, temperature=2.0).exp()
    expected = torch.tensor([[0.0, (weights[0] + weights[2]) / total, weights[1] / total, 0.0]])
    torch.testing.assert_close(knn3, expected)
    lm = torch.full((1, 4), math.log(0.25))
    mixed = interpolate(lm, store.log_probs(query, 4, k=2), 0.25).exp()
    hand = [0.75 * 0.25, 0.25 * near + 0.75 * 0.25, 0.25 * far + 0.75 * 0.25, 0.75 * 0.25]
    torch.testing.assert_close(mixed, torch.tensor([hand]))
    assert float(mixed.sum()) == pytest.approx(1.0)


def tiny_lm():
    config = DecoderConfig.from_name("gpt2-tiny", vocab_size=41, dim=32, num_layers=1,
                                     num_heads=2, ffn_hidden=48)  # fmt: skip
    torch.manual_seed(0)
    return DecoderModel(config).eval()


def rows_of(ids):
    labels = ids.clone()
    labels[:, 0] = -100
    return ids, torch.zeros_like(ids), labels


def test_a_datastore_of_the_evaluated_text_lowers_its_perplexity(tmp_path):
    """Every context of the text is in the datastore with its true next token: with k = 1 the
    kNN distribution puts (nearly) all its mass there, and perplexity drops; lambda 0 is the LM."""
    model = tiny_lm()
    rows = rows_of(torch.randint(0, 41, (3, 20), generator=torch.Generator().manual_seed(1)))
    store = Datastore.load(Datastore.build(model, rows).save(tmp_path / "ds"))
    assert len(store) == 3 * 19 and store.keys.shape == (57, 32)
    plain = evaluate_knn(model, rows, store, lam=0.0)
    assert plain["perplexity"] == pytest.approx(plain["perplexity_lm"])
    mixed = evaluate_knn(model, rows, store, lam=0.25, k=1)
    assert mixed["perplexity"] < 0.5 * mixed["perplexity_lm"]


def test_errors(tmp_path):
    model, other = tiny_lm(), tiny_lm()
    with torch.no_grad():
        other.token_embedding.weight.add_(1.0)
    rows = rows_of(torch.randint(0, 41, (1, 8), generator=torch.Generator().manual_seed(2)))
    store = Datastore.build(model, rows)
    with pytest.raises(CorpusError, match="knn: the datastore holds another model's"):
        evaluate_knn(other, rows, store)
    with pytest.raises(CorpusError, match=r"lambda: expected a weight in \[0, 1\], got 1.5"):
        evaluate_knn(model, rows, store, lam=1.5)
    with pytest.raises(CorpusError, match="knn: .* is not a datastore folder"):
        Datastore.load(tmp_path)


def test_evaluate_with_knn_command(tmp_path, capsys):
    from atenea.cli.main import main

    words = "the a cat dog sat ran on under mat table while because red blue".split()
    generator = torch.Generator().manual_seed(3)
    for i in range(6):
        picks = torch.randint(0, len(words), (200,), generator=generator).tolist()
        (tmp_path / f"doc{i}.txt").write_text(" ".join(words[j] for j in picks))
    out = tmp_path / "lm"
    args = ["train", "lm", "--data", str(tmp_path), "--steps", "2", "--batch-size", "4",
            "--set", "dim=32", "--set", "num_layers=1", "--set", "num_heads=2",
            "--vocab-size", "300", "--max-length", "32", "--eval-every", "0", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    store = tmp_path / "ds"
    assert main(["evaluate", "--model", str(out), "--knn", str(store), "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("built a datastore of") and "perplexity_lm" in printed
    assert (store / "datastore.json").is_file()
    code = main(["evaluate", "--model", str(out), "--knn", str(store), "--lambda", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "atenea evaluate: --lambda: expected a weight in [0, 1], got 2.0"
    # a folder of the user's (or a model) is no place to build one: refused before the build
    code = main(["evaluate", "--model", str(out), "--knn", str(tmp_path), "--limit", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"atenea evaluate: --knn: {tmp_path} holds ")
    assert not (tmp_path / "datastore.json").exists()


def rewrite_tensors(**tensors):
    def edit(folder):
        from safetensors.torch import save_file

        save_file(tensors, str(folder / "datastore.safetensors"))

    return edit


def rewrite_info(text):
    def edit(folder):
        (folder / "datastore.json").write_text(text)

    return edit


def truncate_tensors(folder):
    path = folder / "datastore.safetensors"
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(("edit", "file"), [
    (truncate_tensors, "datastore.safetensors"),
    (rewrite_tensors(k=torch.zeros(2, 32), values=torch.zeros(2, dtype=torch.long)),
     "datastore.safetensors"),  # a tensor under another name
    (rewrite_tensors(keys=torch.zeros(2, 32), values=torch.zeros(3)), "datastore.safetensors"),
    (rewrite_info('{"format": "atenea-'), "datastore.json"),  # cut short
    (rewrite_info("[1, 2]"), "datastore.json"),
    (rewrite_info('{"format": "atenea-knn-datastore/1"}'), "datastore.json"),  # no fingerprint
])  # fmt: skip
def test_a_broken_datastore_is_an_error_naming_its_file(tmp_path, edit, file):
    rows = rows_of(torch.randint(0, 41, (1, 8), generator=torch.Generator().manual_seed(2)))
    folder = Datastore.build(tiny_lm(), rows).save(tmp_path / "ds")
    edit(folder)
    with pytest.raises(CorpusError, match=f"^knn: {folder / file}"):
        Datastore.load(folder)


def test_a_datastore_too_narrow_for_the_model_is_refused():
    model = tiny_lm()  # 32 wide, 41 tokens
    rows = rows_of(torch.randint(0, 41, (1, 8), generator=torch.Generator().manual_seed(2)))
    store = Datastore.build(model, rows)
    for keys, values in ((store.keys[:, :16], store.values), (store.keys, store.values + 41)):
        with pytest.raises(CorpusError, match="knn: the datastore's keys are"):
            evaluate_knn(model, rows, Datastore(keys, values, store.fingerprint))


def test_scoring_shows_a_bar_on_a_terminal(request):
    model = tiny_lm()
    rows = rows_of(torch.randint(0, 41, (20, 8), generator=torch.Generator().manual_seed(4)))
    store = Datastore.build(model, rows)
    shown = request.getfixturevalue("progress_bars")  # the build's own bar is not counted
    evaluate_knn(model, rows, store, batch_size=16, progress=True)
    assert shown[0]["desc"] == "knn" and shown[0]["disable"] is None  # shown on a terminal
    assert shown[0]["total"] == 20 and shown[1:] == [16, 4]  # rows, a batch at a time
