"""How a command ends its output: ``atenea ... | head -1``: the reader closes the pipe, the next write raises BrokenPipeError
(an ``OSError``, which the commands catch as bad input). It must end quietly with 0, not as
``atenea steps: [Errno 32] Broken pipe`` and exit 2."""

import io

import pytest

from atenea.cli.main import main


class ClosedAfterOneLine(io.StringIO):
    def write(self, text):
        if self.getvalue().count("\n") >= 1:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


@pytest.mark.parametrize("args", [["steps", "--no-png"], ["steps", "the cat sat", "--no-png"]])
def test_a_closed_pipe_ends_quietly(args, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdout", ClosedAfterOneLine())
    assert main(args) == 0
    assert "Broken pipe" not in capsys.readouterr().err


def test_a_library_warning_shows_as_one_note_line(monkeypatch, capsys):
    """A tokenizer's "text cut to 256 tokens" came out of `atenea search` as Python shows a
    warning: the library's file and line, then its source line."""
    import warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after
    main(["steps", "--no-png"])
    shown = warnings.formatwarning("a text was cut", UserWarning, "/x/tokenizer.py", 131, "code")
    assert shown == "note: a text was cut\n"
