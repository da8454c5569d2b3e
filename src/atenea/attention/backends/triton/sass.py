"""What ptxas built, read from the cubin Triton compiled: registers, stack and the loops'
machine code (SASS). Used by ``check_sm90`` and ``benchmarks/triton_sass.py``; no GPU needed.

The cubin is the one Triton itself assembled, with its own ptxas and options (Triton 3.9:
the 13.x ``ptxas-blackwell`` with ``--regAllocOptLevel=2``; Triton 3.6: the 12.8 ``ptxas``,
without it), so what is read here is what that Triton would run. Running a ptxas again on the
PTX, as ``check_sm90`` did before, reads another allocation: at 255 registers a thread the two
differ (the light 64x64 dK/dV block at D=128 read 0 spilled bytes so, where its cubin keeps a
32-byte stack under Triton 3.9 and 80 under 3.6).

A spill costs where it runs: a store or load of the stack (``STL``/``LDL``) before or after the
loops runs once a program; inside a loop, once a step. ``loops`` finds the loops (a branch back
to an earlier label) so that the check can count the second kind.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import triton

SPILL_OPS = frozenset({"LDL", "STL"})  # loads and stores of the thread's stack (local memory)
_ADDRESS = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_BRANCH = re.compile(r"BRA\s+`\((\.L_x_\d+)\)")
_RESOURCES = re.compile(r"REG:(\d+) STACK:(\d+)")


def _tool(name: str) -> str:
    """One of the CUDA binaries Triton bundles (``nvdisasm``, ``cuobjdump``)."""
    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def _run_on(cubin: bytes, *command: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernel.cubin"
        path.write_bytes(cubin)
        result = subprocess.run([*command, str(path)], capture_output=True, text=True, check=True)
    return result.stdout


def resources(cubin: bytes) -> tuple[int, int]:
    """Registers a thread and stack bytes a thread (spilled registers: the kernels keep no
    arrays in local memory), as the cubin records them."""
    found = _RESOURCES.search(_run_on(cubin, _tool("cuobjdump"), "-res-usage"))
    if found is None:
        raise RuntimeError("cuobjdump -res-usage printed no REG/STACK line for the kernel")
    return int(found.group(1)), int(found.group(2))


def disassemble(cubin: bytes) -> str:
    return _run_on(cubin, _tool("nvdisasm"), "-c")


def loops(sass: str) -> list[list[str]]:
    """The opcodes of every loop (a branch back to an earlier label), in program order: in the
    attention kernels, the partial tiles' steps, then the full tiles' (the two phases)."""
    instructions, labels, pending = [], {}, []
    for line in sass.splitlines():
        label = _LABEL.match(line)
        if label:
            pending.append(label.group(1))
            continue
        found = _ADDRESS.match(line)
        if found:
            address = int(found.group(1), 16)
            labels.update((name, address) for name in pending)
            pending = []
            instructions.append((address, found.group(2), line))
    # Past the last EXIT lie out-of-line stubs (a TMA wait's retry) that branch back into a
    # loop: not loops of their own
    ends = [address for address, op, _ in instructions if op == "EXIT"]
    bodies = []
    for address, _, line in instructions:
        branch = _BRANCH.search(line)
        if ends and address > ends[-1]:
            break
        if branch and labels.get(branch.group(1), address) < address:
            start = labels[branch.group(1)]
            bodies.append([op for at, op, _ in instructions if start <= at <= address])
    return bodies


def spill_ops(body: list[str]) -> int:
    """Stack loads and stores among a loop's opcodes: spill traffic paid every step."""
    return sum(op in SPILL_OPS for op in body)
