"""``--device`` / ``--precision`` / ``--compile`` on the commands that run a model."""

import json

import pytest
import torch

from atenea.cli.main import main
from atenea.training.devices import resolve_device, uses_bf16
from tests.cli.test_train import QUICK, SMALL, data  # noqa: F401  (the data fixture)
from tests.conftest import CUDA
from tests.helpers import assert_same_weights

NO_GPU = "this machine has no CUDA GPU"


def test_devices_are_what_they_say_and_absent_ones_are_refused():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if CUDA else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ValueError, match=r"^device: expected auto, cpu, cuda or cuda:N, got 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match=r"^device: expected .* got 'mps'"):
        resolve_device("mps")
    with pytest.raises(ValueError, match=r"^device: cuda:64 asked for"):
        resolve_device("cuda:64")
    if not CUDA:
        with pytest.raises(ValueError, match=f"device: cuda asked for, but {NO_GPU}"):
            resolve_device("cuda")


def test_precision_auto_is_bf16_on_a_gpu_only():
    assert uses_bf16("auto", torch.device("cuda")) and not uses_bf16("auto", torch.device("cpu"))
    assert uses_bf16("bf16", torch.device("cpu")) and not uses_bf16("fp32", torch.device("cuda"))
    with pytest.raises(ValueError, match="precision: expected one of auto, bf16, fp32"):
        uses_bf16("fp8", torch.device("cpu"))


@pytest.mark.parametrize("command", [
    ["train", "classify", "--steps", "1"],
    ["evaluate", "--model", "{out}"],
    ["generate", "--model", "{out}", "--prompt", "hi"],
    ["explain", "a cat", "--model", "minilm"],
    ["predict", "a cat", "--model", "{out}"],
])  # fmt: skip
@pytest.mark.parametrize("device", ["tpu", "cuda:64"])
def test_a_bad_device_is_one_line_and_exit_2(command, device, data, tmp_path, capsys):  # noqa: F811
    if command[0] == "train":
        command = [*command, "--data", str(data / "reviews.jsonl"), "--out", str(tmp_path / "r")]
    else:
        command = [part.format(out=tmp_path) for part in command]
    assert main([*command, "--device", device]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"atenea {command[0]}: --device: ") and "\n" not in message
    assert device in message


@pytest.mark.slow
def test_compiled_training_steps_train_the_model_the_eager_ones_do(data, tmp_path):  # noqa: F811
    """``--compile`` changes how the steps run, not what they compute (to float32 rounding)."""
    import atenea

    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        assert main(["train", "classify", "--data", str(data / "reviews.jsonl"), "--steps", "3",
                     "--batch-size", "16", "--out", str(tmp_path / name), "--device", "cpu",
                     *SMALL, *QUICK, *extra]) == 0  # fmt: skip
    eager, compiled = (atenea.load_pretrained(tmp_path / n)[0] for n in ("eager", "compiled"))
    assert_same_weights(eager, compiled, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_train_uses_the_gpu_with_no_flag(data, tmp_path):  # noqa: F811
    """No flag: the model trains on CUDA in bf16 autocast with fused AdamW; the saved
    weights are float32 and load back."""
    import atenea

    assert main(["train", "classify", "--data", str(data / "reviews.jsonl"), "--steps", "4",
                 "--batch-size", "16", "--out", str(tmp_path / "r"), *SMALL, *QUICK]) == 0  # fmt: skip
    last = sorted((tmp_path / "r" / "checkpoints").iterdir())[-1]
    config = json.loads((last / "training_state.json").read_text())["config"]
    assert config["bf16"] is True
    model, _ = atenea.load_pretrained(tmp_path / "r")
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.gpu
def test_resume_on_the_gpu_is_bit_for_bit(tmp_path):
    from tests.training.test_loop import _assert_same_weights, _run

    _, whole, _ = _run(tmp_path / "a", model=_on_cuda())
    _run(tmp_path / "b", stop_at=8, model=_on_cuda())
    _, resumed, _ = _run(tmp_path / "b", resume=True, model=_on_cuda())
    _assert_same_weights(whole, resumed)


def _on_cuda():
    from tests.training.toy import ToyTask

    torch.manual_seed(0)
    return ToyTask().build_model().cuda()


def test_fsdp_without_torchrun_is_one_line(data, tmp_path, capsys):  # noqa: F811
    assert main(["train", "lm", "--data", str(data / "texts"), "--fsdp", "--out",
                 str(tmp_path / "r"), "--quiet"]) == 2  # fmt: skip
    message = capsys.readouterr().err.strip()
    assert message.startswith("atenea train: --fsdp: ") and "torchrun" in message, message
