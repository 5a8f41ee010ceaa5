"""The kws core cross-compiled for a Cortex-M4F and run under unicorn computes what the host build computes.

Skips without arm-none-eabi-gcc or the unicorn package (pip install -e '.[bench]').
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_m4_cycles as m4  # noqa: E402

pytestmark = pytest.mark.skipif(m4.missing_tools() is not None, reason=str(m4.missing_tools()))


@pytest.fixture(scope="module")
def tiny_conv(request):
    pytest.importorskip("keras")
    return m4.cb.zoo_models(m4.cb.model_cache_dir(request))["tiny_conv"]


def test_emulated_m4_build_is_bit_identical_to_the_host(tiny_conv, tmp_path):
    pcm, spec = m4.golden_pcm_and_spec("mfcc10")
    x = m4.test_input(tiny_conv, seed=3)
    # measure() raises unless the emulated scores and int8 features equal the host build's
    r = m4.measure("tiny_conv", tiny_conv, x, spec, pcm, "O2", tmp_path)
    assert r.invoke.instructions == r.invoke_again.instructions
    # the SMLAD path ran: dual multiply-accumulates are most of the MAC-class instructions
    assert r.invoke.by_class["mac"] > r.macs // 4
    assert r.frames.instructions > 0 and r.fe_max_abs < 1e-3


def test_block_counts_match_a_per_instruction_hook(tiny_conv, tmp_path):
    from kws_kit.tflite_info import inspect_tflite

    info = inspect_tflite(tiny_conv)
    pcm, spec = m4.golden_pcm_and_spec("mfcc10")
    src = m4.data_source(tiny_conv, m4.test_input(tiny_conv, seed=4), pcm, spec, info.input_scale, info.input_zero_point)
    elf = m4.read_elf(m4.build_elf(tmp_path, "O2", src))
    run = m4.emulate(elf, per_instruction_check=True, stop_at_mark=4)  # through load and one inference
    seg = {k[0]: v for k, v in run.segments.items()}
    # the code hook skips IT-block instructions whose condition fails; the block sums count them
    # (the M4 issues them, a cycle each), so the sums are >= the hook's count; loading (soft double
    # arithmetic, IT-heavy) skips about 8 %, inference under 1 %
    for mark, slack in ((1, 1.15), (3, 1.02)):
        blocks = m4.count(elf, seg[mark]).instructions
        assert seg[mark].code_hook_count <= blocks <= slack * seg[mark].code_hook_count
    assert m4.count(elf, seg[2]).instructions == seg[2].code_hook_count  # straight-line accessors
