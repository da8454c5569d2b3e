"""Stopping a run without losing it: a checkpoint on Ctrl-C / SIGTERM, and one every few minutes.

A run's scheduled checkpoints come every ``save_every`` steps (by default every steps/2 in the
CLI), so a Ctrl-C, a ``kill`` or a machine that reclaims its job before the first of them would
lose everything. ``Interrupts`` closes that gap for the training loop:

- while it is active, the first SIGINT or SIGTERM only *asks* the run to stop: the loop finishes
  the step it is in, writes a checkpoint (atomically, as every checkpoint) and raises
  ``TrainingInterrupted``; ``train(..., resume=True)`` then goes on from that step, bit for bit
  as if nothing had happened (the checkpoint holds the RNG states like any other). A second
  signal is not held back: Ctrl-C twice stops at once (``KeyboardInterrupt``).
- every ``save_minutes`` minutes of training it also asks for a checkpoint, so a SIGKILL or a
  power cut loses at most that much work.

Under DDP the ranks must agree on when to save (a checkpoint is a collective step), so each
rank's request (``votes``) is summed over the ranks once a step, riding in the all-reduce the
loop already makes of the step's loss and tokens: one rank's signal stops them all at one step,
for no collective of its own.
The handlers are installed only from the main thread (Python allows no other) and the previous
ones are put back when the run ends.
"""

from __future__ import annotations

import signal
import threading
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT/SIGTERM after saving a checkpoint of the step it reached.

    ``step``: the steps done; ``checkpoint``: the folder saved (``None`` if none could be).
    A ``KeyboardInterrupt``, so code that handles Ctrl-C handles this too.
    """

    def __init__(self, step: int, checkpoint, signal_name: str):
        self.step, self.checkpoint, self.signal_name = step, checkpoint, signal_name
        super().__init__(f"{signal_name}: stopped after step {step}, checkpoint {checkpoint}")


class Interrupts:
    """Signal handlers and the checkpoint clock of one run (a context manager).

    ``poll()`` once a step returns ``(save, stop)``: write a checkpoint now, then stop.
    """

    def __init__(self, save_minutes: float | None, world_size: int = 1):
        self.interval = save_minutes * 60.0 if save_minutes else None
        self.world_size = world_size
        self.received: str | None = None  # the name of the first signal received
        self._previous: dict[int, object] = {}
        self._last_save = time.monotonic()

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.getsignal(number)
                signal.signal(number, self._on_signal)
        self._last_save = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _on_signal(self, number: int, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(number).name
            # The next one is not held back: the user who presses Ctrl-C twice means it.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def saved(self) -> None:
        """A checkpoint was written (scheduled or not): the clock starts again."""
        self._last_save = time.monotonic()

    def votes(self) -> list[float]:
        """This rank's ``[stop, save due, stop by SIGTERM]`` now, as 1.0 or 0.0: the loop sums
        them over the ranks with the step's totals and hands the sum to ``poll``."""
        due = self.interval is not None and time.monotonic() - self._last_save >= self.interval
        return [float(self.received is not None), float(due), float(self.received == "SIGTERM")]

    def poll(self, summed: list[float]) -> tuple[bool, bool]:
        """``(save, stop)`` for the step just finished, the same on every rank: from
        ``summed``, every rank's ``votes`` added up in the step's all-reduce. One process needs
        no agreement and reads its own state now (a signal during an evaluation stops there).
        A rank that stops on another's signal takes that signal's name (SIGTERM if any rank
        got one), so rank 0 records what stopped the run, not Ctrl-C by default."""
        stop, due, terminated = summed if self.world_size > 1 else self.votes()
        if stop and self.received is None:
            self.received = "SIGTERM" if terminated else "SIGINT"
        return bool(stop or due), bool(stop)
