"""How the ``atenea`` commands end on bad input: one line on stderr naming the command, and an
exit code; never a traceback."""

from __future__ import annotations

import sys

# Bad input of ours or of the library; anything else is a bug and keeps its traceback.
# (``CheckpointError``, ``DataError``, ``TaskError`` are ValueErrors.)
USER_ERRORS = (ValueError, TypeError, OSError)


def fail(command: str, error: BaseException, code: int = 2) -> int:
    """Print ``atenea COMMAND: <first line of the error>`` to stderr; return ``code``."""
    text = str(error).strip()
    message = text.splitlines()[0] if text else type(error).__name__
    print(f"atenea {command}: {message}", file=sys.stderr)
    return code
