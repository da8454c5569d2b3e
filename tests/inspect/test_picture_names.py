"""Pictures go where their message says: ``--png heat`` writes and names ``heat.png``, a
``.csv`` name is a one-line error before anything runs; titles end on a whole word."""

from atenea.cli.main import main
from atenea.inspect.plots import png_path, title_text


def test_a_name_without_suffix_gets_png_and_says_so(tmp_path, capsys):
    assert main(["steps", "--png", str(tmp_path / "heat")]) == 0
    assert f"heatmap written to {tmp_path / 'heat.png'}" in capsys.readouterr().out
    assert (tmp_path / "heat.png").is_file() and not (tmp_path / "heat").exists()


def test_another_format_is_refused_before_the_steps(tmp_path, capsys):
    assert main(["steps", "--png", str(tmp_path / "out.csv")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "out.csv").exists()
    assert captured.err.startswith("atenea steps: --png: ") and "ends in .png" in captured.err
    assert png_path("A.PNG").name == "A.PNG"


def test_titles_end_on_a_whole_word():
    text = "The robot picked up the wrench because it was heavy and the table shook."
    title = title_text(text, 40)
    assert title == "The robot picked up the wrench because…"
    assert title_text("short text", 40) == "short text"
    assert title_text("x" * 50, 10) == "x" * 10 + "…"  # one long word: cut where it must be
