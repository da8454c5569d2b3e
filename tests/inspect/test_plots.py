"""The pictures of ``atenea.inspect.plots``: what the heatmap shows, and a clear error without
matplotlib."""

import sys

import numpy as np
import pytest
import torch

from atenea.inspect.plots import heatmap_png

GREY = np.array([0xE4, 0xE4, 0xE4])  # the colour of a cell a query may not attend


def grey_pixels(path) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"))
    return int((pixels == GREY).all(-1).sum())


def test_heatmap_greys_the_cells_a_query_may_not_attend(tmp_path):
    torch.manual_seed(0)
    weights = torch.softmax(torch.randn(4, 6), -1)  # 4 queries x 6 keys: not square
    queries, keys = list("abcd"), list("uvwxyz")
    plain = heatmap_png(weights, queries, tmp_path / "plain.png", "t", key_tokens=keys)
    allowed = torch.ones(4, 6, dtype=torch.bool)
    allowed[:, 3:] = False  # half the keys hidden
    half = heatmap_png(weights, queries, tmp_path / "half.png", "t", key_tokens=keys,
                       allowed=allowed, show_values=True, vmax=1.0)  # fmt: skip
    square = torch.softmax(torch.randn(5, 5), -1)
    causal = heatmap_png(square, list("abcde"), tmp_path / "causal.png", "t", causal=True)
    assert grey_pixels(plain) < 100  # a few anti-aliased pixels at most
    assert grey_pixels(half) > 10_000 and grey_pixels(causal) > 10_000


def test_without_matplotlib_a_clear_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'atenea\[plot\]'"):
        heatmap_png(torch.eye(2), ["a", "b"], tmp_path / "x.png", "t")
