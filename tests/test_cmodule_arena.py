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

import cmodule_build as cb  # noqa: E402
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
    return tuple(cb.probe_sizes(cc, flags, '#include "kws_internal.h"',
                                ["sizeof(struct kws_model)", "sizeof(kws_tensor)", "sizeof(kws_op)"], tmp_path))


DRIVER_32 = r"""
#include <stdio.h>
#include <stdlib.h>
#include "kws_model.h"
static unsigned char arena[1 << 20] __attribute__((aligned(16)));
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) exit(2);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*n ? *n : 1);
    if (fread(buf, 1, *n, f) != *n) exit(2);
    fclose(f);
    return buf;
}
/* argv: model input: prints arena_used, whether that arena loads, the code one byte less gives,
 * and the output of one inference in the smallest arena, as hex */
int main(int argc, char **argv) {
    size_t n, n_in;
    kws_model *m;
    kws_error e;
    unsigned char *model = slurp(argv[1], &n), *in = slurp(argv[2], &n_in);
    if (argc != 3 || kws_model_load(&m, model, n, arena, sizeof arena, &e)) { printf("load failed: %s\n", e.message); return 1; }
    size_t used = kws_model_arena_used(m);
    int short_rc = kws_model_load(&m, model, n, arena, used - 1, &e);
    int exact_rc = kws_model_load(&m, model, n, arena, used, &e);
    if (exact_rc || n_in != kws_model_input_size(m)) return 1;
    signed char out[256];
    if (kws_model_output_size(m) > sizeof out || kws_model_invoke(m, (const signed char *)in, out)) return 1;
    printf("%u %d %d ", (unsigned)used, exact_rc, short_rc);
    for (size_t i = 0; i < kws_model_output_size(m); ++i) printf("%02x", (unsigned char)out[i]);
    printf("\n");
    return 0;
}
"""


def _cc_m32() -> str | None:
    cc = compiler()
    if cc is None:
        return None
    probe = subprocess.run([cc, "-m32", "-x", "c", "-", "-o", "/dev/null"], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    return cc if probe.returncode == 0 else None


@pytest.mark.skipif(_cc_m32() is None, reason="no C compiler with -m32 (32-bit multilib)")
def test_twin_equals_a_32_bit_build_of_the_c_loader(models, tmp_path):
    """The boards are 32-bit: there the twin (pointer_bytes=4) must give the C loader's arena_used
    exactly, an arena of that size must load and one byte less must be refused; the 32-bit build
    computes the same scores as the 64-bit one."""
    driver = tmp_path / "arena32.c"
    driver.write_text(DRIVER_32)
    exe = tmp_path / "arena32"
    subprocess.run([compiler(), "-m32", "-std=c99", "-O2", "-Wall", "-Werror", "-ffp-contract=off", f"-I{KWS_DIR}",
                    str(driver), str(KWS_DIR / "kws_model.c"), str(KWS_DIR / "kws_ops.c"), "-o", str(exe), "-lm"],
                   check=True)
    lib = KwsLib()
    rng = np.random.default_rng(1)
    for name, tflite in models.items():
        (tmp_path / "m.tflite").write_bytes(tflite)
        host = lib.load(tflite)
        x = rng.integers(-128, 128, size=host.input_size, dtype=np.int8)
        (tmp_path / "x.bin").write_bytes(x.tobytes())
        run = subprocess.run([str(exe), str(tmp_path / "m.tflite"), str(tmp_path / "x.bin")],
                             capture_output=True, text=True)
        assert run.returncode == 0, f"{name}: {run.stdout}"
        used, exact_rc, short_rc, scores = run.stdout.split()
        twin = inspect_tflite(tflite, measure_tflm=False).kws_arena_bytes(pointer_bytes=4)
        assert int(used) == twin, f"{name}: 32-bit C loader {used} B, twin {twin} B"
        assert (int(exact_rc), int(short_rc)) == (0, 3), name  # KWS_ERR_ARENA one byte short
        assert scores == host(x[None])[0].tobytes().hex(), name


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
    # the smallest arena a 32-bit build of the loader takes (test above; 16,208 B before the tensor
    # table became temporary, the op structs compact, the shifts int8, in-place ops shared buffers
    # and DEPTHWISE computed its corrected biases in its scratch)
    assert arena_for_board(info, nucleo) == info.kws_arena_bytes(4) == 7372
    assert check_fits(info, nucleo).arena_bytes == 7372
    assert arena_for_board(info, openmv) == info.budget_arena_bytes  # TFLite Micro-based ml.Model


@needs_cc
def test_in_place_ops_stay_bit_identical_to_tflite_micro():
    """Outputs written over a dying input (kws_model.c's in_place): a 1x1 CONV_2D with fewer output
    than input channels, one with as many, an ADD whose second input is the one that dies (the first
    is read again later), RESHAPE. The loader must share those buffers (fewer activation bytes than
    the plan without sharing), give TFLite Micro's scores bit for bit, and the twin its arena."""
    pytest.importorskip("tflite_micro")
    import keras

    from kws_kit.tflite_info import kws_plan_activations

    inp = keras.Input((49, 10))
    x = keras.layers.Reshape((49, 10, 1))(inp)
    x = keras.layers.Conv2D(12, (3, 3), padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(8, 1, activation="relu")(x)  # 12 -> 8 channels over x, which dies here
    z = keras.layers.DepthwiseConv2D((3, 3), padding="same", activation="relu")(y)
    w = keras.layers.Conv2D(8, 1)(z)  # 8 -> 8 over z
    s = keras.layers.Add()([y, w])  # y is read again below: the sum goes over w
    u = keras.layers.Add()([y, s])
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(u))
    rng = np.random.default_rng(2)
    tflite = to_int8_tflite(keras.Model(inp, out), rng.normal(size=(40, 49, 10)).astype(np.float32))
    info = inspect_tflite(tflite, measure_tflm=False)
    assert {"ADD", "CONV_2D", "RESHAPE"} <= set(info.op_names)
    shared, _ = kws_plan_activations(info)
    assert shared < info.activation_bytes
    model = KwsLib().load(tflite)
    assert model.arena_used <= info.kws_arena_bytes(pointer_bytes=8) <= model.arena_used + 16
    x_in = cb.test_inputs(tflite, n_real=0, n_random=200)
    np.testing.assert_array_equal(model(x_in), cb.tflm_outputs(tflite, x_in))
