"""The translate task with ``arch="rnnsearch" | "rnnencdec"``: the model it builds, the
description that rebuilds it, and training through the DDP wrapper (a group of one, in
process) equal to plain training."""

import pytest
import torch
import torch.distributed as dist

from atenea.models import EncoderDecoderModel, RNNEncDec, RNNSearch
from atenea.training import distributed
from atenea.training.data import Split
from atenea.training.loop import TrainConfig, train
from atenea.training.tasks import TaskError, build_task, from_description

NUMBERS = "cero uno dos tres cuatro cinco seis siete ocho nueve".split()
ENGLISH = "zero one two three four five six seven eight nine".split()
SMALL = {"embedding_dim": "8", "hidden_dim": "12", "alignment_dim": "10", "maxout_dim": "6"}


def pairs(count, offset=0):
    return [{"source": f"{NUMBERS[(i + offset) % 10]} y {NUMBERS[i % 7]}",
             "target": f"{ENGLISH[(i + offset) % 10]} and {ENGLISH[i % 7]}"}
            for i in range(count)]  # fmt: skip


def task_for(arch, **kwargs):
    return build_task("translate", data=Split(pairs(24), pairs(4, 3)), arch=arch,
                      tokenizer_kind="chars", max_length=20, overrides=dict(SMALL), **kwargs)  # fmt: skip


def write_tsv(path, rows):
    path.write_text("source\ttarget\n" + "".join(f"{r['source']}\t{r['target']}\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "arch, model_class",
    [("rnnsearch", RNNSearch), ("rnnencdec", RNNEncDec), ("transformer", EncoderDecoderModel)],
)
def test_arch_builds_its_model_and_its_description_rebuilds_it(arch, model_class, tmp_path):
    overrides = SMALL if arch != "transformer" else {"dim": "16", "num_heads": "2"}
    train_file = write_tsv(tmp_path / "train.tsv", pairs(24))
    validation_file = write_tsv(tmp_path / "validation.tsv", pairs(4, 3))
    task = build_task("translate", data=train_file, validation=validation_file, arch=arch,
                      tokenizer_kind="chars", max_length=20, overrides=dict(overrides))  # fmt: skip
    assert type(task.build_model()) is model_class
    info = task.describe()
    assert info["options"]["arch"] == arch
    task.tokenizer.save(tmp_path)
    rebuilt = from_description(info, tmp_path)
    assert type(rebuilt.build_model()) is model_class
    assert rebuilt.model_config == task.model_config


def test_rnn_fields_and_transformer_fields_do_not_mix():
    with pytest.raises(TaskError, match="num_heads is not a setting"):
        build_task("translate", data=Split(pairs(4), pairs(2)), arch="rnnsearch",
                   overrides={"num_heads": "2"})  # fmt: skip
    with pytest.raises(TaskError, match="arch"):
        build_task("translate", data=Split(pairs(4), pairs(2)), arch="lstm")
    with pytest.raises(TaskError, match="choose it with arch="):
        build_task("translate", data=Split(pairs(4), pairs(2)), overrides={"arch": "rnnsearch"})


def test_rnnsearch_through_the_ddp_wrapper_matches_plain_training(tmp_path):
    settings = dict(steps=3, batch_size=4, lr=3e-3, warmup=1, eval_every=0, save_every=3,
                    seed=1, progress=False, eval_limit=2)  # fmt: skip
    torch.manual_seed(0)
    plain_task = task_for("rnnsearch")
    plain = plain_task.build_model()
    train(plain_task, plain, TrainConfig(output=tmp_path / "plain", **settings))
    dist.init_process_group("gloo", init_method=(tmp_path / "store").as_uri(), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        task = task_for("rnnsearch", tokenizer=plain_task.tokenizer)
        model = task.build_model()
        train(task, model, TrainConfig(output=tmp_path / "ddp", **settings))
    finally:
        distributed.teardown()
    for a, b in zip(plain.parameters(), model.parameters()):
        assert torch.equal(a, b)
