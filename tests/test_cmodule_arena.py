"""The host's twin of the kws C loader's arena layout (tflite_info.kws_engine_arena_bytes)
against the C loader itself: what deploy writes into config.json must be enough on a board."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")

from cmodule_build import KwsLib, compiler  # noqa: E402

from kws_kit.models import zoo  # noqa: E402
from kws_kit.quantize import to_int8_tflite  # noqa: E402
from kws_kit.tflite_info import KWS_STRUCT_BYTES, inspect_tflite  # noqa: E402

KWS_DIR = Path(__file__).resolve().parents[1] / "device/cmodule/kws"
SHIPPED = Path(__file__).resolve().parents[1] / "models/bundles/yes_no_go_stop/model.tflite"
needs_cc = pytest.mark.skipif(compiler() is None, reason="no C compiler")


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(0)
    out = {"shipped": SHIPPED.read_bytes()}
    for name in zoo.model_names():
        model = zoo.build(name, (49, 10), 12)
        out[name] = to_int8_tflite(model, rng.normal(size=(40, 49, 10)).astype(np.float32))
    return out


@needs_cc
def test_twin_covers_the_c_loader_on_every_zoo_model(models):
    lib = KwsLib()
    for name, tflite in models.items():
        need = lib.load(tflite).arena_used  # the smallest arena the loader accepts (64-bit build)
        twin = inspect_tflite(tflite, measure_tflm=False).kws_arena_bytes(pointer_bytes=8)
        assert need <= twin <= need + 16, f"{name}: C loader {need} B, twin {twin} B"
        lib.load(tflite, twin)  # and that arena is accepted


def _struct_sizes(cc: str, flags: list[str], tmp_path: Path) -> tuple[int, ...]:
    probe = tmp_path / "probe.c"
    probe.write_text('#include "kws_internal.h"\n'
                     "const unsigned probe_sizes[3] = {sizeof(struct kws_model), sizeof(kws_tensor), sizeof(kws_op)};\n")
    obj = tmp_path / "probe.o"
    subprocess.run([cc, *flags, f"-I{KWS_DIR}", "-c", str(probe), "-o", str(obj)], check=True)
    objdump = shutil.which(cc.replace("gcc", "objdump")) or shutil.which("objdump")
    dump = subprocess.run([objdump, "-s", "-j", ".rodata", str(obj)], capture_output=True, text=True, check=True).stdout
    line = next(row for row in dump.splitlines() if row.startswith(" 0000 "))
    raw = bytes.fromhex("".join(line.split()[1:4]))  # three little-endian uint32 words
    return tuple(int.from_bytes(raw[i:i + 4], "little") for i in range(0, 12, 4))


@needs_cc
def test_struct_sizes_of_the_host_build(tmp_path):
    assert _struct_sizes(compiler(), [], tmp_path) == KWS_STRUCT_BYTES[8]


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_struct_sizes_on_cortex_m4(tmp_path):
    flags = ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
    assert _struct_sizes("arm-none-eabi-gcc", flags, tmp_path) == KWS_STRUCT_BYTES[4]


def test_board_arena_is_the_c_modules_need(models):
    from kws_kit.boards import load_profile
    from kws_kit.budget import arena_for_board, check_fits

    info = inspect_tflite(models["shipped"])
    nucleo, openmv = load_profile("nucleo"), load_profile("openmv")
    # measured on a 32-bit MicroPython build with the kws module: 16,208 B is the smallest arena it takes
    assert arena_for_board(info, nucleo) == info.kws_arena_bytes(4) == 16208
    assert check_fits(info, nucleo).arena_bytes == 16208
    assert arena_for_board(info, openmv) == info.budget_arena_bytes  # TFLite Micro-based ml.Model
