"""What ``atenea explain`` puts in its report's data besides the maps: the summary in the
language of ``--lang``, tokens isolated for the page (but not in the terminal), the heading of
the section under the head view."""

import json
import re

from atenea.cli.main import main
from tests.inspect.conftest import OVERRIDE

FSI, PDI = "\u2068", "\u2069"


def report(path) -> dict:
    block = re.search(r'id="atenea-data">(.*?)</script>', path.read_text(encoding="utf-8"))
    return json.loads(block.group(1))


def test_the_report_summary_is_in_the_language_of_lang(layout_models, tmp_path, capsys):
    out = tmp_path / "es.html"
    args = ["explain", "the robot picked the wrench", "--focus", "robot", "--lang", "es"]
    assert main([*args, "--model", str(layout_models / "bert"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = report(out)
    summary = data["panels"][0]["summary"]
    assert data["lang"] == "es"
    assert summary[0].startswith(f"capa 0: {FSI}robot{PDI} -> ")
    assert any(line.startswith("rollout, todas las capas") for line in summary)
    # the same lines as printed, less the marks that isolate each token
    for line in summary:
        assert f"  {line.replace(FSI, '').replace(PDI, '')}" in printed.splitlines()


def test_tokens_are_isolated_in_the_report_not_in_the_terminal(layout_models, tmp_path, capsys):
    """U+2068 FSI ... U+2069 PDI around each token of a summary line and of a translation's
    heading (a right-to-left token cannot reorder the numbers around it, test_report_layout.py
    shows it in a browser); the terminal prints the tokens bare."""
    out = tmp_path / "s2s.html"
    model = str(layout_models / "seq2seq")
    args = ["explain", "the robot", "--target", f"{OVERRIDE} wrench", "--model", model]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    panel = report(out)["panels"][0]
    assert panel["text"] == f"{FSI}the robot{PDI} → {FSI}{OVERRIDE} wrench{PDI}"
    assert panel["summary"][0].startswith(f"{FSI}{OVERRIDE}{PDI} -> L1: {FSI}")
    assert FSI not in printed and PDI not in printed and f"{OVERRIDE} -> L1: " in printed


def test_rnnsearch_heads_its_repeated_alignment_as_such(layout_models, tmp_path, capsys):
    out = tmp_path / "rnn.html"
    args = ["explain", "the robot", "--target", "wrench", "--model", str(layout_models / "rnn")]
    assert main([*args, "--out", str(out)]) == 0
    panel = report(out)["panels"][0]
    assert panel["rollout_heading"] == "Alignment" and "no rollout" in panel["rollout_caption"]
