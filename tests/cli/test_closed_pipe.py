"""``atenea ... | head -1``: the reader closes the pipe, the next write raises BrokenPipeError
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
