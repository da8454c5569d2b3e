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

An empty folder, or one that does not exist yet, is free. A folder holding a trained model
(``model.safetensors``, ``config.json`` or ``task.json``: a finished run, a converted or
downloaded model) is never written over without ``--overwrite``, even a run's whose checkpoints
are gone. An atenea report is an HTML file holding the report's data block
(``id="atenea-data"``); a PNG atenea drew carries its mark (``inspect.plots.is_atenea_png``); any
other existing file is not ours. The same rules guard ``convert --out``, ``index --out``,
``evaluate --out / --predictions / --png`` and the pictures of ``steps``, ``cost`` and
``explain --png`` (``check_folder_output``, ``check_file_output``, ``check_picture_output``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path

from atenea.training.tasks.settings import TASKS

RUN_MARKER = "atenea-run.json"
REPORT_SIGNATURE = 'id="atenea-data"'
_CHECKPOINT = re.compile(r"checkpoint-\d+(\.tmp)?")
MODEL_FILES = ("model.safetensors", "config.json", "task.json")  # any of them: a trained model


def _names_a_task(path: Path) -> bool:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and value.get("task") in TASKS


def holds_model(folder: Path) -> bool:
    """Whether ``folder`` holds a trained model (any of ``MODEL_FILES``)."""
    return any((folder / name).is_file() for name in MODEL_FILES)


def _has_checkpoints(folder: Path) -> bool:
    checkpoints = folder / "checkpoints"
    return checkpoints.is_dir() and any(
        _CHECKPOINT.fullmatch(path.name) for path in checkpoints.iterdir()
    )


def is_atenea_run(folder: Path) -> bool:
    """Whether ``folder`` is a run folder atenea wrote (see the module's docstring)."""
    if (folder / RUN_MARKER).is_file() or _names_a_task(folder / "task.json"):
        return True
    return _has_checkpoints(folder)


def check_folder_output(out: Path, overwrite: bool, ours=None, *, flag: str = "--out",
                        doing: str = "write into it", delete: bool = True) -> None:  # fmt: skip
    """Raise ``ValueError`` (``FLAG: ...``) when writing into the folder ``out`` could replace
    what atenea did not write: ``out`` is a file, or a folder that holds a trained model or other
    files, unless ``ours(out)`` recognises it (a folder the command may write again). With
    ``overwrite``, a file at ``out`` is deleted (when ``delete``: rank 0 of a DDP run) so a folder
    can take its place, and a folder is written into (files of the same names replaced, the
    others left)."""
    if out.exists() and not out.is_dir():
        if not overwrite:
            raise ValueError(
                f"{flag}: {out} is a file, not a folder; choose a folder name, or add "
                f"--overwrite to replace the file"
            )
        if delete:
            out.unlink()
        return
    if overwrite or not out.is_dir() or (ours is not None and ours(out)):
        return
    present = sorted(p.name for p in out.iterdir())
    if not present:
        return
    model = holds_model(out)
    shown = sorted(present, key=lambda name: name not in MODEL_FILES) if model else present
    listed = ", ".join(shown[:3]) + (", ..." if len(shown) > 3 else "")
    what = "a trained model" if model else "files atenea did not write"
    raise ValueError(
        f"{flag}: {out} holds {what} ({listed}); choose another {flag}, or add --overwrite to "
        f"{doing} anyway"
    )


def _trainable(folder: Path) -> bool:
    """A run folder ``atenea train`` may go on in: one atenea wrote, without a model whose
    checkpoints are gone (``train`` itself refuses a folder with checkpoints: ``--resume``)."""
    return is_atenea_run(folder) and (_has_checkpoints(folder) or not holds_model(folder))


def check_run_output(out: Path, overwrite: bool, delete: bool = True) -> None:
    """Raise ``ValueError`` (``--out: ...``) when ``out`` holds something atenea did not write,
    or a trained model without its checkpoints (nothing to resume: training would replace it).
    With ``overwrite``, a file at ``out`` is deleted (when ``delete``: rank 0 of a DDP run) so
    a folder can take its place, and a foreign folder is trained into (files of the same names
    replaced, the others left)."""
    check_folder_output(out, overwrite, _trainable, doing="train into it", delete=delete)


def make_output_folder(out: Path, flag: str = "--out") -> None:
    """Create ``out`` (and its parents) now, before the work, so a path that cannot be a folder
    (under a file, in a read-only place) is one line naming ``flag``, not an errno at the end."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"{flag}: cannot create the folder {out} ({error.strerror or error})"
        ) from None


def check_file_output(path: Path, flag: str, overwrite: bool, ours=None) -> None:
    """Raise ``ValueError`` (``FLAG: ...``) when ``path`` is a folder, or an existing file that
    ``ours(path)`` does not recognise as one atenea wrote, unless ``overwrite``."""
    if path.is_dir():
        raise ValueError(f"{flag}: {path} is a folder; give a file name")
    if not path.exists() or overwrite or (ours is not None and ours(path)):
        return
    mine = " and atenea did not write it" if ours is not None else ""
    raise ValueError(
        f"{flag}: {path} exists{mine}; choose another name, or add --overwrite to replace it"
    )


def planned(path, draw, *args, **kwargs) -> tuple[Path, Callable[[], Path]]:
    """A picture to draw once the outputs are checked: ``(path, the call that draws it)``;
    ``draw`` takes the file as its keyword ``path`` (the others as given)."""
    return Path(path), functools.partial(draw, *args, path=path, **kwargs)


def picture_output(path, overwrite: bool, numbered=None, flag: str = "--png") -> Path:
    """``--png PATH`` as the file it will be (``plots.png_path``: ``.png`` added, another
    suffix refused), checked before the work (``check_picture_output``); ``numbered(path)``: the
    files a command writes from it, when more than one. Errors start with ``flag``."""
    from atenea.inspect.plots import png_path

    try:
        path = png_path(path)
    except ValueError as error:
        raise ValueError(f"{flag}: {error}") from None
    check_picture_output(numbered(path) if numbered else [path], flag, overwrite)
    return path


def check_picture_output(paths, flag: str, overwrite: bool) -> None:
    """``check_file_output`` for PNG files: one that atenea drew may be drawn again."""
    from atenea.inspect.plots import is_atenea_png

    for path in paths:
        check_file_output(Path(path), flag, overwrite, is_atenea_png)


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
