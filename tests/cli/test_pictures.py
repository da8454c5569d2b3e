"""The alignment pictures drawn after training number layers as ``atenea explain`` does (L0 ...)."""

import re

from atenea.cli import train_pictures
from atenea.inspect import plots


def test_alignment_titles_count_layers_from_zero(translator, tmp_path, monkeypatch):
    titles = []

    def record(weights, tokens, path, title, *args, **kwargs):
        titles.append(title)
        return path

    monkeypatch.setattr(plots, "heatmap_png", record)
    train_pictures.draw_alignments(translator, ["3 de mayo", "14 de mayo"])
    layers = 1  # SMALL: num_layers=1, so the only decoder layer is L0
    for title in titles:
        found = re.search(r"decoder layer L(\d+) \(of L0\.\.L(\d+)\)", title)
        assert found and int(found.group(1)) < layers and int(found.group(2)) == layers - 1
