"""The four tasks on small hand-made data: batches, masking, packing, rebuilding, settings."""

import json
import random

import pytest
import torch

from atenea.models import Tokenizer
from atenea.training.data import Split
from atenea.training.tasks import (
    IGNORE,
    LanguageModelTask,
    TaskError,
    build_task,
    parse_overrides,
)

WORDS = (
    "the a cat dog sat ran on under mat table while because happy sad good bad not but very "
    "quite red blue green small large house garden river bridge"
).split()
SMALL = {"dim": "32", "num_layers": "1", "num_heads": "2", "ffn_hidden": "64"}


def documents(count, words, seed=0):
    rng = random.Random(seed)
    return [
        {"text": " ".join(rng.choice(WORDS) for _ in range(words)), "source": f"doc{i}"}
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def mlm_task():
    docs = documents(12, 400)
    return build_task("mlm", data=Split(docs[:10], docs[10:]), max_length=64, vocab_size=120,
                      overrides=SMALL)  # fmt: skip


def test_mlm_masking_statistics(mlm_task):
    task = mlm_task
    # Eight independent maskings of every chunk (one generator each: a chunk's mask is drawn
    # from the batch generator and its index, so repeating an index in one batch would repeat
    # its mask, not sample it again).
    indices = list(range(task.num_train_examples()))
    batches = [task.batch(indices, torch.Generator().manual_seed(seed)) for seed in range(8)]
    batch = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
    original, _ = _padded(task, indices * 8)
    labels, inputs, real = batch["labels"], batch["input_ids"], batch["attention_mask"].bool()
    special = torch.isin(original, task.special_ids)
    eligible = real & ~special
    chosen = labels != IGNORE
    assert eligible.sum() > 20_000
    assert not (chosen & ~eligible).any()  # [CLS], [SEP], [PAD] never chosen
    assert (inputs[~chosen] == original[~chosen]).all()  # only chosen tokens change
    assert (labels[chosen] == original[chosen]).all()
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.01
    to_mask = (inputs[chosen] == task.mask_id).float().mean()
    kept = (inputs[chosen] == original[chosen]).float().mean()
    swapped = 1 - to_mask - kept  # random tokens that differ from the original
    assert abs(to_mask - 0.8) < 0.02
    # A random token equals the original once in ~vocab draws: "kept" is 10% plus a little.
    assert 0.08 < kept < 0.13 and 0.08 < swapped < 0.12
    assert not torch.isin(inputs[chosen & (inputs != task.mask_id)], task.special_ids).any()


def _padded(task, indices):
    """The unmasked batch ``(ids, lengths)``, padded independently of the task's own code."""
    rows = [torch.tensor(task.train_chunks[i]) for i in indices]
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=task.pad_id)
    return ids, torch.tensor([len(r) for r in rows])


def test_mlm_masking_comes_from_the_generator(mlm_task):
    indices = [0, 1, 2, 3]
    first = mlm_task.batch(indices, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global RNG plays no part
    again = mlm_task.batch(indices, torch.Generator().manual_seed(5))
    other = mlm_task.batch(indices, torch.Generator().manual_seed(6))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["labels"], other["labels"])


def test_mlm_masks_a_chunk_the_same_in_any_shard_of_its_batch(mlm_task):
    # Two DDP ranks each mask half of a micro-batch with the same generator state: every chunk
    # must get the mask one process gives it in the whole batch (else DDP trains on other
    # targets than one process).
    indices = [3, 0, 5, 1, 2, 4]
    whole = mlm_task.batch(indices, torch.Generator().manual_seed(9))
    for start in (0, 3):
        half = mlm_task.batch(indices[start : start + 3], torch.Generator().manual_seed(9))
        width = half["input_ids"].shape[1]  # a half pads to its own longest chunk
        for key in ("input_ids", "labels", "attention_mask"):
            assert torch.equal(half[key], whole[key][start : start + 3, :width])


def test_mlm_validation_the_masking_never_reaches_is_a_task_error():
    """A validation text too short for 15% to choose a token: its perplexity has no tokens to
    average; the first evaluation (before any step) says so instead of failing inside."""
    docs = documents(12, 400)
    task = build_task("mlm", data=Split(docs, [{"text": "dog ran"}]), max_length=64,
                      vocab_size=120, overrides=SMALL)  # fmt: skip
    with pytest.raises(
        TaskError,
        match=r"validation: the evaluation's fixed masking \(15% of "
        r"the tokens\) chose none in its 1 chunk\(s\); give more",
    ):
        task.evaluate(task.build_model())


def test_mlm_loss_of_a_batch_without_targets_is_zero_not_nan(mlm_task):
    batch = mlm_task.batch([0, 1], torch.Generator().manual_seed(0))
    batch["labels"].fill_(IGNORE)  # nothing chosen (short rows can draw no mask at all)
    model = mlm_task.build_model()
    loss = mlm_task.loss(model, batch)
    loss.backward()
    assert float(loss) == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_mlm_chunks_are_wrapped_and_bounded(mlm_task):
    for chunk in mlm_task.train_chunks:
        assert chunk[0] == mlm_task.cls_id and chunk[-1] == mlm_task.sep_id
        assert 3 <= len(chunk) <= 64


def _lm_documents():
    rng = random.Random(1)
    return [
        {"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))), "source": str(i)}
        for i in range(30)
    ]


LM_DOCS = _lm_documents()


@pytest.fixture(scope="module")
def lm_task():
    return build_task("lm", data=Split(LM_DOCS[:26], LM_DOCS[26:]), max_length=48,
                      vocab_size=300, overrides=SMALL)  # fmt: skip


def test_packing_separates_documents(lm_task):
    input_ids, document_ids, labels = lm_task.train_rows
    eos = lm_task.model_config["eos_token_id"]
    stream = input_ids[document_ids >= 0]
    owners = document_ids[document_ids >= 0]
    assert owners.tolist() == sorted(owners.tolist())  # documents in order, contiguous
    assert int((stream == eos).sum()) == 26  # one </s> per document
    ends = torch.nonzero(stream == eos).flatten()
    assert (owners[ends] == torch.arange(26)).all()  # each document ends with its </s>
    # A token whose predecessor belongs to another document is never a target, nor padding.
    starts = torch.zeros_like(labels, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    assert starts.sum() > 10
    assert (labels[starts] == IGNORE).all()
    assert (labels[document_ids < 0] == IGNORE).all()
    inner = ~starts & (document_ids >= 0)
    assert torch.equal(labels[inner], input_ids[inner])


def test_lm_labels_of_a_hand_made_row():
    ids = torch.tensor([[5, 6, 7, 8, 9, 0]])
    docs = torch.tensor([[0, 0, 1, 1, 1, -1]])
    labels = LanguageModelTask.labels_of(ids, docs)
    assert labels.tolist() == [[5, 6, IGNORE, 8, 9, IGNORE]]


def test_one_document_does_not_change_another(lm_task):
    torch.manual_seed(0)
    model = lm_task.build_model().eval()
    batch = lm_task.batch([0], None)
    ids, docs = batch["input_ids"], batch["document_ids"]
    first = docs[0, 0]
    assert (docs[0] != first).any(), "the row should hold more than one document"
    changed = ids.clone()
    inside = docs == first
    changed[inside] = (changed[inside] + 7) % lm_task.tokenizer.vocab_size
    with torch.no_grad():
        before = model(ids, document_ids=docs).logits
        after = model(changed, document_ids=docs).logits
    others = ~inside[0]
    assert torch.allclose(before[0, others], after[0, others], atol=1e-5)
    assert not torch.allclose(before[0, inside[0]], after[0, inside[0]], atol=1e-3)


def test_joined_documents_see_the_text_before_them(lm_task):
    # join_documents: the same packing (same ids, each document still ends with </s>), one
    # document id a row, so a document's tokens are predicted from the documents before it.
    joined = build_task("lm", data=Split(LM_DOCS[:26], LM_DOCS[26:]), max_length=48,
                        vocab_size=300, overrides={**SMALL, "join_documents": "true"})  # fmt: skip
    ids, docs, labels = joined.train_rows
    separate_ids, separate_docs, _ = lm_task.train_rows
    assert torch.equal(ids, separate_ids)
    assert torch.equal(docs, torch.where(separate_docs >= 0, 0, -1))
    real = docs >= 0
    assert torch.equal(labels[real], ids[real]) and (labels[~real] == IGNORE).all()
    torch.manual_seed(0)
    model = joined.build_model().eval()
    row = joined.batch([0], None)
    first = separate_docs[0] == separate_docs[0, 0]  # the row's first document
    changed = row["input_ids"].clone()
    changed[0, first] = (changed[0, first] + 7) % joined.tokenizer.vocab_size
    with torch.no_grad():
        before = model(row["input_ids"], document_ids=row["document_ids"]).logits
        after = model(changed, document_ids=row["document_ids"]).logits
    later = ~first & real[0]
    assert not torch.allclose(before[0, later], after[0, later], atol=1e-3)


def test_joined_documents_are_refused_with_a_segment_memory():
    with pytest.raises(TaskError, match="join_documents"):
        build_task("lm", data=Split(LM_DOCS[:26], LM_DOCS[26:]), max_length=48, vocab_size=300,
                   overrides={**SMALL, "join_documents": "true", "segment": "16"})  # fmt: skip


def test_lm_loss_and_evaluate(lm_task):
    torch.manual_seed(0)
    model = lm_task.build_model()
    batch = lm_task.batch([0, 1], None)
    loss = lm_task.loss(model, batch)
    assert loss.requires_grad and 4 < float(loss.detach()) < 8  # about log(vocab) untrained
    # Counted independently: every training document's tokens plus its </s>, over all rows.
    everything = lm_task.batch(range(lm_task.num_train_examples()), None)
    encoded = lm_task.tokenizer.encode_batch(
        [d["text"] for d in LM_DOCS[:26]], truncation=False, add_special_tokens=False
    )
    assert lm_task.tokens(everything) == sum(len(ids) + 1 for ids in encoded)
    assert lm_task.tokens(batch) < lm_task.tokens(everything)
    metrics = lm_task.evaluate(model)
    assert set(metrics) == {"perplexity", "loss"}
    assert metrics["perplexity"] == pytest.approx(torch.tensor(metrics["loss"]).exp().item())
    rows = lm_task.val_rows
    with torch.no_grad():
        logits = model.eval()(rows[0], document_ids=rows[1]).logits.double()
    model.train()
    log_probs = logits[:, :-1].log_softmax(-1)
    targets = rows[2][:, 1:]
    kept = targets != IGNORE
    expected = -log_probs[kept].gather(-1, targets[kept][:, None]).mean()
    assert metrics["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert model.training  # evaluate puts the mode back


CLASSIFY = [
    {"text": f"{a} {b} {'good' if label == 'yes' else 'bad'}", "label": label}
    for a in WORDS[:8]
    for b in WORDS[8:14]
    for label in ("yes", "no")
]


def test_classify_labels_batches_and_rebuild(tmp_path):
    task = build_task("classify", data=Split(CLASSIFY[:80], CLASSIFY[80:]), max_length=16,
                      vocab_size=100, overrides=SMALL)  # fmt: skip
    info = json.loads(json.dumps(task.describe()))  # JSON-able
    assert info["task"] == "classify" and info["labels"] == ["no", "yes"]
    assert info["max_length"] == 16 and info["tokenizer"]["kind"] == "wordpiece"
    assert info["model_config"]["num_layers"] == 1 and info["overrides"] == SMALL
    batch = task.batch([0, 1, 2], None)
    assert batch["labels"].tolist() == [task.label_ids[CLASSIFY[i]["label"]] for i in range(3)]
    cls_id = task.tokenizer.token_id("cls")
    assert (batch["input_ids"][:, 0] == cls_id).all()
    model = task.build_model()
    assert model.num_labels == 2 and model.head.pooling == "mean"
    metrics = task.evaluate(model)
    assert set(metrics) == {"accuracy", "macro_f1"} and 0 <= metrics["accuracy"] <= 1

    task.tokenizer.save(tmp_path)  # a rebuild reads the tokenizer back, never retrains
    rebuilt = _rebuild(info, tmp_path, Split(CLASSIFY[:80], CLASSIFY[80:]))
    assert rebuilt.model_config == task.model_config and rebuilt.label_ids == task.label_ids
    other = rebuilt.batch([0, 1, 2], None)
    assert all(torch.equal(batch[k], other[k]) for k in batch)


def _rebuild(info, folder, split):
    """``from_description`` with the data given as a Split (what a file would give)."""
    from atenea.training import tasks

    return tasks.TASK_CLASSES[info["task"]](
        split.train, split.validation, Tokenizer.from_folder(folder),
        max_length=info["max_length"], model_config=info["model_config"],
        options=info["options"], info={"labels": info["labels"]},
    )  # fmt: skip


def test_classify_refuses_unknown_labels(tmp_path):
    task = build_task("classify", data=Split(CLASSIFY[:80], CLASSIFY[80:]), max_length=16,
                      vocab_size=100, overrides=SMALL)  # fmt: skip
    with pytest.raises(TaskError, match="'maybe'"):
        task.encode([{"text": "hello", "label": "maybe"}])


DATES = [
    {"source": f"{d} de {m} de {y}", "target": f"{y}-{i + 1:02d}-{d:02d}"}
    for i, m in enumerate(["enero", "febrero", "marzo", "abril"])
    for d in (1, 9, 17, 25)
    for y in (1987, 2024)
]


def test_translate_batch_loss_and_evaluate():
    task = build_task("translate", data=Split(DATES[:28], DATES[28:]), tokenizer_kind="chars",
                      max_length=32, overrides=SMALL)  # fmt: skip
    batch = task.batch([0, 5], None)
    assert (batch["tgt_ids"][:, 0] == task.bos_id).all()
    for row in range(2):
        target = batch["labels"][row][batch["labels"][row] != IGNORE].tolist()
        assert target[-1] == task.eos_id
        assert task.tokenizer.decode(target[:-1]) == DATES[[0, 5][row]]["target"]
        # teacher forcing: the decoder input is the labels shifted right behind <s>
        length = len(target)
        assert batch["tgt_ids"][row, 1:length].tolist() == target[:-1]
        source = batch["src_ids"][row][batch["src_mask"][row].bool()].tolist()
        assert task.tokenizer.decode(source) == DATES[[0, 5][row]]["source"]
    model = task.build_model()
    assert model.config.share_embeddings and model.config.norm_position == "pre"
    loss = task.loss(model, batch)
    assert loss.requires_grad and torch.isfinite(loss)
    metrics = task.evaluate(model)
    assert set(metrics) == {"exact_match", "bleu", "chrf"}
    # What a user would give the trained model: the validation sources, as written.
    assert task.example_inputs(2) == [e["source"] for e in DATES[28:30]]


def test_overrides_are_typed_and_checked():
    assert parse_overrides(["num_layers=3", " dropout = 0.2"]) == {
        "num_layers": "3",
        "dropout": "0.2",
    }
    for bad in (["num_layers"], ["=3"], ["num_layers="]):
        with pytest.raises(TaskError, match="key=value"):
            parse_overrides(bad)
    docs = documents(6, 60)
    split = Split(docs[:5], docs[5:])
    task = build_task("lm", data=split, vocab_size=300, max_length=32,
                      overrides={**SMALL, "num_layers": "3", "tie_embeddings": "false"})  # fmt: skip
    model = task.build_model()
    assert len(model.layers) == 3 and model.lm_head is not None
    with pytest.raises(TaskError, match="not a setting.*num_layer\\b|num_layer"):
        build_task("lm", data=split, overrides={"num_layer": "3"})
    with pytest.raises(TaskError, match="expected int"):
        build_task("lm", data=split, overrides={"num_layers": "three"})
    # The library names its own arguments (the CLI shows them as flags: tests/cli).
    with pytest.raises(TaskError, match="^size: expected one of tiny, small, base, got 'huge'"):
        build_task("lm", data=split, size="huge")
    with pytest.raises(TaskError, match="^overrides: 'num_layers': expected key=value"):
        parse_overrides(["num_layers"])
    with pytest.raises(TaskError, match="^max_length: expected an integer >= 2"):
        build_task("lm", data=split, max_length=1)
    with pytest.raises(TaskError, match="task"):
        build_task("summarize", data=split)
