"""Names of saved tensors that carry an index (``training/names.py``): written and read back by
one pair of functions, by the checkpoint (ranks, parameters) and lm_carry (memory slots) alike."""

import pytest

from atenea.training.names import group_by_index, indexed_name, parse_indexed_name


def test_a_name_round_trips_and_nests():
    name = indexed_name("task", 1, indexed_name("memory", 0, "layer.2.keys"))
    assert name == "task.1.memory.0.layer.2.keys"
    assert parse_indexed_name("task", name) == (1, "memory.0.layer.2.keys")
    assert parse_indexed_name("memory", "memory.0.layer.2.keys") == (0, "layer.2.keys")
    assert parse_indexed_name("rng.rank", indexed_name("rng.rank", 12, "cuda")) == (12, "cuda")


def test_other_names_are_not_read_and_a_bad_index_is_an_error():
    assert parse_indexed_name("task", "optimizer.state.3.exp_avg") is None
    assert parse_indexed_name("task", "tasks.0.x") is None  # the prefix ends at a dot
    assert parse_indexed_name("rng.rank", "rng.torch") is None
    for bad in ("task.x.memory", "task.1", "task.-1.a"):
        with pytest.raises(ValueError, match=rf"{bad}: expected a name 'task.<index>.<name>'"):
            parse_indexed_name("task", bad)


def test_group_by_index():
    named = {"task.10.b": 3, "task.0.a": 1, "rng.torch": 9, "task.0.b.c": 2}
    assert group_by_index("task", named) == {0: {"a": 1, "b.c": 2}, 10: {"b": 3}}
    assert group_by_index("memory", named) == {}
