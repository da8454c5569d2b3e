"""``--device`` (and for training ``--precision`` and ``--compile``), shared by the commands
that run a model: ``train``, ``evaluate``, ``generate``, ``explain``."""

from __future__ import annotations

from atenea.training.devices import PRECISIONS, resolve_device


def add_device_arguments(parser, training: bool = False) -> None:
    """Add ``--device`` to ``parser``; with ``training``, also ``--precision`` and ``--compile``."""
    group = parser.add_argument_group("device")
    group.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (auto)",
    )
    if training:
        group.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="auto",
            help="auto: bfloat16 autocast on a GPU, float32 on the CPU (auto)",
        )
        group.add_argument(
            "--compile",
            action="store_true",
            help="torch.compile the model for the training steps (pays on a GPU after a "
            "minute or so of compiling)",
        )


def device_of(args):
    """The ``torch.device`` of ``--device`` (a one-line ``device: ...`` error if absent)."""
    return resolve_device(getattr(args, "device", "auto"))
