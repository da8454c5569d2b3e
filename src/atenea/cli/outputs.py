"""What the commands may write over: nothing that atenea did not write.

``atenea train --out FOLDER`` and ``atenea explain --out FILE`` write into paths the user names.
A path that holds something else (a ``save_pretrained`` folder, the user's own
``config.json`` or ``metrics.jsonl``, a CSV given as ``--out`` by mistake) is refused with one
line, unless ``--overwrite`` says the user means it.

How atenea recognises its own run folder (any one of these):

- ``atenea-run.json``: written by ``atenea train`` when a run starts, and kept up to date with
  the run's state (``training``, ``interrupted``, ``failed``, ``finished``), the last step
  saved and the command that goes on; a folder left without a model says so through it;
- ``task.json`` naming an atenea task (the model folders of runs from before that file);
- ``checkpoints/checkpoint-N/`` folders (a run's checkpoints).

An empty folder, or one that does not exist yet, is free. An atenea report is an HTML file
holding the report's data block (``id="atenea-data"``); any other existing file is not ours.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

from atenea.training.tasks.settings import TASKS

RUN_MARKER = "atenea-run.json"
REPORT_SIGNATURE = 'id="atenea-data"'
_CHECKPOINT = re.compile(r"checkpoint-\d+(\.tmp)?")


def _names_a_task(path: Path) -> bool:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and value.get("task") in TASKS


def is_atenea_run(folder: Path) -> bool:
    """Whether ``folder`` is a run folder atenea wrote (see the module's docstring)."""
    if (folder / RUN_MARKER).is_file() or _names_a_task(folder / "task.json"):
        return True
    checkpoints = folder / "checkpoints"
    if not checkpoints.is_dir():
        return False
    return any(_CHECKPOINT.fullmatch(path.name) for path in checkpoints.iterdir())


def check_run_output(out: Path, overwrite: bool, delete: bool = True) -> None:
    """Raise ``ValueError`` (``--out: ...``) when ``out`` holds something atenea did not write.
    With ``overwrite``, a file at ``out`` is deleted (when ``delete``: rank 0 of a DDP run) so
    a folder can take its place, and a foreign folder is trained into (files of the same names
    replaced, the others left)."""
    if out.exists() and not out.is_dir():
        if not overwrite:
            raise ValueError(
                f"--out: {out} is a file, not a run folder; choose a folder name, or add "
                f"--overwrite to replace the file with the run"
            )
        if delete:
            out.unlink()
        return
    if not out.is_dir() or is_atenea_run(out):
        return
    present = sorted(p.name for p in out.iterdir())
    if present and not overwrite:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise ValueError(
            f"--out: {out} holds files atenea did not write ({shown}); choose another --out, or "
            f"add --overwrite to train into it anyway"
        )


def check_report_output(out: Path, overwrite: bool) -> None:
    """Raise ``ValueError`` (``--out: ...``) when ``out`` is a file that is not an atenea
    report (or a folder), unless ``overwrite``."""
    if out.is_dir():
        example = out / "report.html"
        raise ValueError(f"--out: {out} is a folder; give a file name such as {example}")
    if not out.exists() or overwrite:
        return
    try:
        with out.open(encoding="utf-8", errors="replace") as handle:
            ours = REPORT_SIGNATURE in handle.read()
    except OSError:
        ours = False
    if not ours:
        raise ValueError(
            f"--out: {out} exists and is not an atenea report; choose another file name, or add "
            f"--overwrite to replace it"
        )


# -- the state of a run, in its folder ----------------------------------------------------------


def resume_command(task: str, out: Path) -> str:
    """The command that goes on with a run (the folder quoted for the shell if it must be)."""
    return f"atenea train {task} --out {shlex.quote(str(out))} --resume"


def write_run_state(out: Path, task: str, state: str, message: str, checkpoint=None) -> None:
    """``out/atenea-run.json``: ``state`` (training / interrupted / failed / finished), what
    happened (``message``), the newest checkpoint and the command that goes on from it."""
    value = {"task": task, "state": state, "message": message}
    if checkpoint is not None:
        value["checkpoint"] = str(checkpoint)
        value["continue"] = resume_command(task, out)
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / (RUN_MARKER + ".writing")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, out / RUN_MARKER)


def unfinished_run(folder: Path) -> str | None:
    """For a run folder without a model: one line saying what happened and how to go on
    (None when the folder has a model or is not a run)."""
    if (folder / "model.safetensors").is_file() or not (folder / RUN_MARKER).is_file():
        return None
    try:
        value = json.loads((folder / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    line = f"{folder} holds an unfinished run ({value.get('message', value.get('state'))})"
    if "continue" in value:
        return f"{line}; go on with: {value['continue']}"
    return f"{line}; no checkpoint was saved: train it again"


def record_stop(out: Path, task: str, error: BaseException, steps: int) -> str:
    """Write the state of a run that ``error`` stopped; return the line to show the user."""
    from atenea.training.state import latest_checkpoint

    checkpoint = latest_checkpoint(out)
    done = f"step {int(checkpoint.name.split('-')[1])} of {steps}" if checkpoint else None
    if isinstance(error, KeyboardInterrupt):
        how = getattr(error, "signal_name", None) or "Ctrl-C"
        state, message = "interrupted", f"interrupted by {how}"
    else:
        state, message = "failed", f"failed: {str(error).splitlines()[0] if str(error) else error}"
    write_run_state(out, task, state, message + (f", saved at {done}" if done else ""), checkpoint)
    if checkpoint is None:
        return f"{message} before the first checkpoint; nothing to resume, train again"
    return f"{message}; saved at {done}; go on with: {resume_command(task, out)}"


def check_finished(model: str) -> None:
    """Raise ``ValueError`` (``--model: ...``) when ``model`` is a run folder without a model:
    an interrupted or failed run, named as such with the command that goes on."""
    unfinished = unfinished_run(Path(model))
    if unfinished is not None:
        raise ValueError(f"--model: {unfinished}")


def train_recorded(task, model, config, name: str, out: Path, resume: bool) -> dict:
    """``loop.train``, with the run's state kept in ``out/atenea-run.json``: a folder left
    without a model says what happened and how to go on. On Ctrl-C / SIGTERM or a failed run
    the exception gets ``atenea_message``, the line ``atenea train`` shows."""
    from atenea.training import distributed, loop
    from atenea.training.state import latest_checkpoint

    main = distributed.is_main()
    if main:
        write_run_state(out, name, "training", f"training to step {config.steps}",
                        latest_checkpoint(out))  # fmt: skip
    try:
        metrics = loop.train(task, model, config, resume=resume)
    except (KeyboardInterrupt, loop.TrainingError) as error:
        if main:
            error.atenea_message = record_stop(out, name, error, config.steps)
        raise
    if main:
        write_run_state(out, name, "finished", f"finished {config.steps} steps",
                        latest_checkpoint(out))  # fmt: skip
    return metrics
