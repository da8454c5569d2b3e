"""``atenea cost``: what the ``L x L`` matrix of attention costs, measured on this machine.

One head at growing lengths on three paths (the literal seven steps, PyTorch's fused kernel, a
sliding window), a table of time and peak memory, the fitted exponent of each path (about 2 for
the literal path's memory, 1 for the window's) and a log-log plot. The measuring is
``atenea.inspect.cost``; the sentences come from ``atenea.inspect.lang``.
"""

from __future__ import annotations

import torch

from atenea.cli.errors import fail
from atenea.inspect.cost import PATHS, run_cost
from atenea.inspect.lang import LanguageError, pick_language, say
from atenea.inspect.plots import cost_png
from atenea.training.devices import resolve_device

DEFAULT_LENGTHS = "256,512,1024,2048,4096,8192,16384"


class CostError(ValueError):
    """Bad input for ``atenea cost`` (one line)."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="time and memory of one attention head as L grows: literal L x L, fused, window",
        description="Measure one head of attention at growing lengths on three paths: the "
        "literal steps (the whole L x L matrix), PyTorch's fused kernel, and a sliding window; "
        "print time and peak memory, the fitted exponent of each, and plot them against L. A "
        "path stops before a length whose memory would not fit in this machine.",
    )
    parser.add_argument(
        "--lengths",
        default=DEFAULT_LENGTHS,
        help=f"comma-separated lengths (default {DEFAULT_LENGTHS})",
    )
    parser.add_argument("--dim", type=int, default=64, help="head dimension d (default 64)")
    parser.add_argument(
        "--window",
        type=int,
        default=256,
        help="keys each query sees on the window path (default 256)",
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help=f"which paths, comma-separated (default {','.join(PATHS)})",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls per point, at least (3)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: on a busy machine more threads add waits that hide the "
        "growth being measured)",
    )
    parser.add_argument(
        "--max-memory",
        type=float,
        metavar="GIB",
        help="stop a path above this much memory (default: 80%% of what is free)",
    )
    parser.add_argument(
        "--png",
        default="attention_cost.png",
        help="plot path (default attention_cost.png; a PNG atenea drew there is replaced, any "
        "other file only with --overwrite)",
    )
    parser.add_argument("--no-png", action="store_true", help="do not draw the plot")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a --png file atenea did not draw"
    )
    parser.add_argument("--lang", help="en or es (default: from the locale)")
    parser.set_defaults(run=run)


def _lengths(text: str) -> list[int]:
    try:
        lengths = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise CostError(f"--lengths {text}: give whole numbers separated by commas") from None
    if not lengths or lengths[0] < 1:
        raise CostError(f"--lengths {text}: give positive lengths, e.g. 256,512,1024")
    return lengths


def _size(count: float, digits: int = 1) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.{digits}f} {unit}"
    return f"{int(count)} B"


def _sizes_apart(need: float, have: float) -> tuple[str, str]:
    """Both sizes, with enough digits that the larger does not read as the smaller."""
    digits = 1
    while _size(need, digits) == _size(have, digits) and digits < 4:
        digits += 1
    return _size(need, digits), _size(have, digits)


def run(args) -> int:
    try:
        return _run(args)
    except (CostError, LanguageError) as error:
        return fail("cost", error)


def _run(args) -> int:
    from atenea.cli.outputs import picture_output

    lang = pick_language(args.lang)
    lengths = _lengths(args.lengths)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        raise CostError(f"--paths {args.paths}: choose among {', '.join(PATHS)}")
    if args.dim < 1 or args.window < 1 or args.repeats < 1:
        raise CostError("--dim, --window and --repeats must be at least 1")
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise CostError(f"--{error}") from None
    if args.threads < 1:
        raise CostError(f"--threads {args.threads}: give at least 1")
    if args.max_memory is not None and not args.max_memory > 0:  # every path would stop at once
        raise CostError(f"--max-memory {args.max_memory:g}: give a positive number of GiB")
    if not args.no_png:
        try:  # before the measurement: a picture cannot go to plot.csv, nor over mine.png
            args.png = picture_output(args.png, args.overwrite)
        except ValueError as error:
            raise CostError(str(error)) from None
    max_bytes = None if args.max_memory is None else int(args.max_memory * 2**30)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _measure_and_print(args, lang, lengths, paths, device, max_bytes)
    finally:
        torch.set_num_threads(threads)


def _measure_and_print(args, lang, lengths, paths, device, max_bytes) -> int:

    print(say(lang, "cost_title", dim=args.dim, device=device, threads=args.threads))
    print(say(lang, "cost_paths", window=args.window))
    how = say(lang, "cost_memory_cuda" if device.type == "cuda" else "cost_memory_cpu")
    print(say(lang, "cost_memory", how=how))
    print("")
    path_, time_, memory_ = say(lang, "cost_columns").split("|")
    print(say(lang, "cost_header", length="L", path=path_, time=time_, memory=memory_))
    bar = _progress_bar(len(paths) * len(lengths))

    def progress(path: str, length: int) -> None:
        if bar is not None:
            bar.set_description(f"{path} L={length}")
            bar.update(1)

    result = run_cost(
        lengths,
        paths=paths,
        dim=args.dim,
        window=args.window,
        repeats=args.repeats,
        device=device,
        max_bytes=max_bytes,
        progress=progress,
    )
    if bar is not None:
        bar.close()
    for point in result.points:
        print(
            say(
                lang,
                "cost_header",
                length=point.length,
                path=point.path,
                time=f"{point.seconds * 1e3:.3f} ms",
                memory=_size(point.peak_bytes),
            )
        )
    print("")
    for path, (length, need, have) in result.stopped.items():
        need_text, have_text = _sizes_apart(need, have)
        print(say(lang, "cost_stopped", path=path, length=length, need=need_text, have=have_text))
    for path in paths:
        if path in result.exponents:
            time_exp, memory_exp = result.exponents[path]
            print(say(lang, "cost_fit", path=path, time=time_exp, memory=memory_exp))
        else:
            print(say(lang, "cost_fit_short", path=path))
    print(say(lang, "cost_lesson", window=args.window))
    if not args.no_png and result.points:
        try:
            cost_png(result, args.png, say(lang, "cost_plot_title", dim=args.dim, device=device),
                     tuple(say(lang, "cost_plot_axes").split("|")))  # fmt: skip
        except ImportError:
            print(say(lang, "no_matplotlib").strip())
        except OSError as error:
            raise CostError(
                f"cannot write the plot to {args.png}: {error.strerror or error}"
            ) from None
        else:
            print(say(lang, "cost_plot", path=args.png))
    return 0


def _progress_bar(total: int):
    """A progress bar on stderr (tqdm), or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, leave=False, unit="point")
