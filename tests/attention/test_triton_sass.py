"""How the sm_90 check reads spills: the loops of a disassembly and the stack traffic in them
(by hand on a written listing), a real kernel compiled for sm_90 with and without enough
registers (cuobjdump and nvdisasm as Triton bundles them), and the check's verdict."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

from atenea.attention.backends.triton import check_sm90, sass  # noqa: E402
from atenea.attention.backends.triton.check_sm90 import Usage, verdict  # noqa: E402

SOURCE = Path(__file__).resolve().parents[2] / "src"

# A prologue store, an outer loop (.L_x_1 .. the branch at 0x0090) holding an inner one
# (.L_x_2 .. 0x0070), and a forward branch that is no loop.
LISTING = """
        /*0000*/                   STL [R1], RZ ;
        /*0010*/              @!P0 BRA `(.L_x_3) ;
.L_x_1:
        /*0020*/                   LDL R8, [R1+0x34] ;
.L_x_2:
        /*0030*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ;
        /*0040*/                   LDL.LU R6, [R1+0xc] ;
        /*0050*/                   FFMA R17, R4, R8, R17 ;
        /*0060*/                   STL [R1+0xc], R6 ;
        /*0070*/               @P1 BRA `(.L_x_2) ;
        /*0080*/                   MUFU.EX2 R3, R3 ;
        /*0090*/               @P0 BRA `(.L_x_1) ;
.L_x_3:
        /*00a0*/                   EXIT ;
"""


def test_loops_are_the_backward_branches_with_their_opcodes():
    inner, outer = sass.loops(LISTING)
    assert inner == ["HGMMA", "LDL", "FFMA", "STL", "BRA"]
    assert outer == ["LDL", "HGMMA", "LDL", "FFMA", "STL", "BRA", "MUFU", "BRA"]
    assert [sass.spill_ops(body) for body in (inner, outer)] == [2, 3]


# A TMA wait: the loop tries the barrier once and, if not ready, jumps to a retry stub placed
# past the kernel's last EXIT, which branches back into the loop (a backward branch that is no
# loop of its own: counted, it made a 1516-instruction "loop" of a TMA build).
TMA_LISTING = """
.L_x_1:
        /*0000*/                   SYNCS.PHASECHK.TRANS64.TRYWAIT P4, [UR16], R2 ;
        /*0010*/              @!P4 BRA `(.L_x_9) ;
.L_x_5:
        /*0020*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ;
        /*0030*/                   UTMALDG.4D [UR8], [UR50] ;
        /*0040*/               @P0 BRA `(.L_x_1) ;
        /*0050*/              @!P1 EXIT ;
        /*0060*/                   EXIT ;
.L_x_9:
        /*0070*/                   SYNCS.PHASECHK.TRANS64.TRYWAIT P4, [UR16], R2 ;
        /*0080*/              @!P4 BRA `(.L_x_9) ;
        /*0090*/                   BRA `(.L_x_5) ;
.L_x_10:
        /*00a0*/                   BRA `(.L_x_10) ;
"""


def test_retry_stubs_past_the_last_exit_are_no_loops():
    assert sass.loops(TMA_LISTING) == [["SYNCS", "BRA", "HGMMA", "UTMALDG", "BRA"]]


def test_spill_share_is_the_worst_loop():
    used = Usage(shared=0, registers=255, stack=16, loops=(100, 400), loop_spills=(1, 12))
    assert used.spill_share == pytest.approx(0.03)
    assert Usage(0, 96, 0, (), ()).spill_share == 0.0


def _spilling(share: float) -> Usage:
    return Usage(1024, 255, 80, (1000,), (round(share * 1000),))


def test_verdict_budgets_light_blocks_and_shared_memory():
    """2% of a loop (stop 22 timed 1.5% as harmless), 4% in the light 64x64 dK/dV blocks of
    16-bit D=128 (``configs.is_light``: no modifier, one head a step or a packed group), and
    never over the 227 KB of shared memory."""
    light = ("dK/dV", 128, "bf16", "light:CAUSAL", 4, 4, True)  # a packed group
    heavy = ("dK/dV", 128, "bf16", "rules", 1, 1, False)  # softcap: not light
    looped = ("dK/dV", 128, "bf16", "plain", 4, 1, False)  # a group looped: not light
    forward = ("forward", 128, "bf16", "plain", 1, 1, False)
    small = ("dK/dV", 64, "bf16", "plain", 1, 1, False)  # D=64 has no light blocks
    for job in (light, heavy, looped, forward, small):
        assert verdict(job, _spilling(0.015)) == ""
        assert verdict(job, _spilling(0.05)) == "fails"
    assert verdict(light, _spilling(0.03)) == "light"
    assert [verdict(job, _spilling(0.03)) for job in (heavy, looped, forward, small)] == [
        "fails"
    ] * 4
    too_big = Usage(check_sm90.tuning.SHARED_MEMORY_LIMIT + 1, 64, 0, (), ())
    assert verdict(light, too_big) == "fails"


PROBE = Path(__file__).with_name("sass_probe.py")
ANY_JOB = ("forward", 128, "bf16", "plain", 1, 1, False)  # judged at SPILL_SHARE


def test_a_real_cubin_spills_in_its_loop_only_when_starved_of_registers():
    """A kernel with 32 accumulator values a thread (``sass_probe.py``), compiled for sm_90 in
    a process without the interpreter: in the default register budget, no stack and no spill
    in its loop; held to 32 registers a thread, ptxas keeps them on the stack and loads and
    stores them every step, which the check sees and fails."""
    environment = {**os.environ, "PYTHONPATH": str(SOURCE), "TRITON_DEFAULT_FP_FUSION": "1"}
    environment.pop("TRITON_INTERPRET", None)
    result = subprocess.run(
        [sys.executable, str(PROBE)], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    roomy, starved = (Usage(**fields) for fields in json.loads(result.stdout))
    assert roomy.stack == 0 and roomy.registers > 32 and roomy.spill_share == 0.0
    assert verdict(ANY_JOB, roomy) == ""
    assert starved.registers <= 32 and starved.stack > 0
    assert len(starved.loops) == 1 and starved.loop_spills[0] > 0
    assert verdict(ANY_JOB, starved) == "fails"
