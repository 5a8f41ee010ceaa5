"""The `kws` C core under AddressSanitizer + UBSan (a standalone driver, no LD_PRELOAD),
a bounded mutation fuzz run of the model reader, and the Cortex-M4F cross-build size."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import cmodule_build as cb

DRIVER = cb.SRC / "tools" / "kws_check.c"
GOLDEN = Path(__file__).resolve().parent / "golden"
FUZZ_SECONDS = float(os.environ.get("KWS_FUZZ_SECONDS", "20"))
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os", "-Wall", "-Wextra",
            "-Werror", "-std=c99", "-ffp-contract=off", "-ffunction-sections", "-fdata-sections"]
M4_BUDGET_BYTES = 40 * 1024


def _sanitizer_works() -> bool:
    if cb.compiler() is None:
        return False
    try:
        cb.build_program(DRIVER, sanitize=True)
        return True
    except RuntimeError:
        return False


needs_asan = pytest.mark.skipif(not _sanitizer_works(), reason="no C compiler with ASan/UBSan")


@pytest.fixture(scope="module")
def driver():
    return cb.build_program(DRIVER, sanitize=True)


@pytest.fixture(scope="module")
def zoo_tflite(request):
    pytest.importorskip("keras")
    pytest.importorskip("ai_edge_litert")
    return cb.zoo_models(cb.model_cache_dir(request))


def _run(cmd, timeout=300):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env)


@needs_asan
@pytest.mark.parametrize("name", ["tiny_conv", "ds_cnn_s", "tds_resnet", "tc_resnet8"])
def test_inference_under_sanitizers_is_clean_and_exact(driver, zoo_tflite, tmp_path, name):
    pytest.importorskip("tflite_micro")
    tflite = zoo_tflite[name]
    x = cb.test_inputs(tflite, n_real=30, n_random=30, seed=2)
    (tmp_path / "m.tflite").write_bytes(tflite)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    proc = _run([driver, "run", tmp_path / "m.tflite", 400_000, tmp_path / "in.bin", len(x), tmp_path / "out.bin"])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8).reshape(len(x), -1)
    np.testing.assert_array_equal(got, cb.tflm_outputs(tflite, x))


@needs_asan
def test_frontend_under_sanitizers(driver, tmp_path):
    from kws_kit import golden

    arrays, _ = golden.load(GOLDEN)
    spec = json.loads((GOLDEN / "frontend_mfcc13.json").read_text())
    t = spec["tables"]
    lines = [" ".join(map(str, [spec["window_length"], spec["hop_length"], spec["n_fft"], spec["n_mels"],
                                 spec["n_coeffs"], 49, 0, repr(spec["pcm_scale"]), repr(spec["log_floor"])])),
             " ".join(map(str, t["mel_starts"])), " ".join(str(len(w)) for w in t["mel_weights"]),
             " ".join(repr(v) for w in t["mel_weights"] for v in w)]
    (tmp_path / "cfg.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "pcm.bin").write_bytes(arrays["chirps_noise.pcm"].tobytes())
    proc = _run([driver, "frontend", tmp_path / "cfg.txt", tmp_path / "pcm.bin", tmp_path / "out.bin"])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32).reshape(49, 13)
    ref = arrays["chirps_noise.mfcc13"]
    assert (np.abs(got - ref).max(1) / np.maximum(1, np.abs(ref).max(1))).max() < 1e-3
    # the board's mode: the rolling window kept as int8
    scale, zero_point = 0.25, -3
    proc = _run([driver, "frontend", tmp_path / "cfg.txt", tmp_path / "pcm.bin", tmp_path / "q.bin", scale, zero_point])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    got_q = np.frombuffer((tmp_path / "q.bin").read_bytes(), np.int8).reshape(49, 13)
    expected = np.clip(np.floor(got / np.float32(scale) + np.float32(zero_point) + np.float32(0.5)), -128, 127)
    np.testing.assert_array_equal(got_q, expected.astype(np.int8))


@needs_asan
def test_fuzzed_models_never_crash_the_reader(driver, zoo_tflite, tmp_path):
    seeds = []
    for name in ("tiny_conv", "tds_resnet", "tc_resnet8"):
        (tmp_path / f"{name}.tflite").write_bytes(zoo_tflite[name])
        seeds.append(tmp_path / f"{name}.tflite")
    proc = _run([driver, "fuzz", FUZZ_SECONDS, 12345, *seeds], timeout=FUZZ_SECONDS * 10 + 120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    stats = dict(zip(proc.stdout.split()[::2], map(int, proc.stdout.split()[1::2])))
    # the run did real work: many mutants, some rejected for each reason, some still loaded and ran
    assert stats["iterations"] > 200
    assert stats["format"] > 0 and stats["loaded"] > 0 and stats["invoked"] > 0


ARM_CC = shutil.which("arm-none-eabi-gcc")


def _compile_core_for_arm(flags: list[str], out_dir: Path) -> list[Path]:
    """Each core source to an object with ``flags`` (warnings are errors in M4_FLAGS)."""
    objects = []
    for name in cb.CORE:
        obj = out_dir / (Path(name).stem + ".o")
        proc = subprocess.run([ARM_CC, *flags, f"-I{cb.SRC}", "-c", str(cb.SRC / name), "-o", str(obj)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        objects.append(obj)
    return objects


@pytest.mark.skipif(ARM_CC is None, reason="arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)")
def test_cortex_m4f_build_is_warning_free_and_within_budget(tmp_path):
    objects = _compile_core_for_arm(M4_FLAGS, tmp_path)
    size = subprocess.run([shutil.which("arm-none-eabi-size"), "-t", *map(str, objects)], capture_output=True, text=True)
    total = size.stdout.strip().splitlines()[-1].split()
    text, data, bss = (int(v) for v in total[:3])
    print(f"Cortex-M4F core: text {text} data {data} bss {bss}")
    assert text > 4000  # the kernels really are in there
    assert text + data + bss <= M4_BUDGET_BYTES
    # the DSP path is what the M4 build uses: SMLAD appears in the kernels
    dis = subprocess.run([shutil.which("arm-none-eabi-objdump"), "-d", str(tmp_path / "kws_ops.o")],
                         capture_output=True, text=True).stdout
    assert "smlad" in dis


# MicroPython's stm32 port compiles every file (user C modules included) with these float
# flags and links only its own float libm (lib/libm; these are the functions it defines), no
# double libm: `floor`, `frexp`, `round`, `cos`, ... are undefined references in the firmware.
STM32_PORT_FLOAT_FLAGS = ["-std=gnu99", "-Wpointer-arith", "-Wdouble-promotion", "-Wfloat-conversion",
                          "-fsingle-precision-constant"]
MICROPYTHON_FLOAT_LIBM = set(
    "acosf acoshf asinf asinhf atan2f atanf atanhf ceilf cosf coshf erfcf erff expf expm1f floorf fmodf "
    "frexpf ldexpf lgammaf log10f log1pf logf modff nearbyintf powf roundf scalbnf sinf sinhf sqrtf tanf "
    "tanhf tgammaf truncf".split())
LIBC_OK = {"memcpy", "memset", "memmove", "memcmp", "strcpy", "strcmp", "strlen", "snprintf", "vsnprintf"}


@pytest.mark.skipif(ARM_CC is None, reason="arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)")
def test_core_compiles_under_the_stm32_port_float_flags_and_needs_no_double_libm(tmp_path):
    flags = [f for f in M4_FLAGS if not f.startswith("-std=")] + STM32_PORT_FLOAT_FLAGS
    objects = _compile_core_for_arm(flags, tmp_path)
    nm = subprocess.run([shutil.which("arm-none-eabi-nm"), "-u", *map(str, objects)],
                        capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in nm.splitlines() if line.strip().startswith("U ")}
    assert undefined, nm  # the parse worked: the core does call memcpy, logf, ...
    missing = {s for s in undefined
               if not s.startswith("__aeabi_") and not s.startswith("kws_")
               and s not in MICROPYTHON_FLOAT_LIBM and s not in LIBC_OK}
    assert not missing, f"symbols MicroPython's stm32 firmware does not provide: {sorted(missing)}"
