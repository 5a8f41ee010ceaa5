"""The `kws` C core on the host (ctypes): bit-exact int8 inference, the front end, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import cmodule_build as cb

pytestmark = pytest.mark.skipif(cb.compiler() is None, reason="no C compiler")

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def lib():
    return cb.KwsLib(cb.build_shared())


@pytest.fixture(scope="module")
def zoo_tflite(request):
    pytest.importorskip("keras")
    pytest.importorskip("ai_edge_litert")
    return cb.zoo_models(cb.model_cache_dir(request))


def _zoo_names():
    from kws_kit.models import zoo

    return zoo.model_names()


@pytest.mark.parametrize("name", _zoo_names())
def test_zoo_model_outputs_are_bit_identical_to_tflite_micro(lib, zoo_tflite, name):
    """TensorFlow Lite Micro (PyPI tflite-micro, what kws_kit.quantize.run_int8 runs by default) is the truth."""
    pytest.importorskip("tflite_micro")
    from kws_kit.tflite_info import inspect_tflite

    tflite = zoo_tflite[name]
    info = inspect_tflite(tflite)
    model = lib.load(tflite, 400_000)
    assert (model.input_size, model.output_size) == (490, 12)
    assert model.input_scale == pytest.approx(info.input_scale) and model.input_zero_point == info.input_zero_point
    assert model.output_scale == pytest.approx(1 / 256) and model.output_zero_point == -128
    assert model.n_ops == len(info.ops)
    x = cb.test_inputs(tflite)
    assert len(x) >= 500
    expected = cb.tflm_outputs(tflite, x)
    got = model(x)
    mismatched = np.flatnonzero((got != expected).any(axis=1))
    assert mismatched.size == 0, f"{name}: {mismatched.size} of {len(x)} inputs differ, first {mismatched[:5]}"
    # not a degenerate model: the outputs move with the input
    assert len(np.unique(expected.argmax(1))) > 1 or np.ptp(expected.astype(int), axis=0).max() > 4
    # the planner reuses memory: the arena is below "every activation alive at once" + tables
    all_alive = sum(-(-t.nbytes // 16) * 16 for t in info.tensors if not t.is_constant)
    assert model.arena_used < all_alive + 16 * 1024
    # an arena of exactly arena_used bytes is enough, a smaller one is refused cleanly
    lib.load(tflite, model.arena_used)(x[:2])
    with pytest.raises(cb.KwsError, match=r"\[3\] arena too small"):
        lib.load(tflite, model.arena_used - 64)


@pytest.mark.parametrize("name", _zoo_names())
def test_cortex_m4_dual_mac_path_gives_the_same_bits(zoo_tflite, name):
    """The Cortex-M4 DSP path (SXTB16/SMLAD/SMLABB/SMLATT/SADD16 emulated in C on the host) against TFLite Micro."""
    pytest.importorskip("tflite_micro")
    dsp = cb.KwsLib(cb.build_shared(dsp_emulate=True))
    x = cb.test_inputs(zoo_tflite[name], n_real=40, n_random=40, seed=5)
    np.testing.assert_array_equal(dsp.load(zoo_tflite[name], 400_000)(x), cb.tflm_outputs(zoo_tflite[name], x))


@pytest.mark.parametrize("name", ["ds_cnn_s", "tds_resnet"])
def test_litert_reference_variant_matches_ai_edge_litert(zoo_tflite, name):
    """-DKWS_FC_LITERT_REFERENCE: per-channel FULLY_CONNECTED rescaled in double, as ai-edge-litert's BUILTIN_REF."""
    lib = cb.KwsLib(cb.build_shared(extra_flags=("-DKWS_FC_LITERT_REFERENCE",)))
    x = cb.test_inputs(zoo_tflite[name], n_real=60, n_random=60, seed=6)
    np.testing.assert_array_equal(lib.load(zoo_tflite[name], 400_000)(x), cb.litert_reference_outputs(zoo_tflite[name], x))


def _golden():
    from kws_kit import golden

    return golden.load(GOLDEN)


@pytest.mark.parametrize("preset", ["mfcc10", "mfcc13", "logmel40"])
def test_frontend_matches_golden_vectors(lib, preset):
    arrays, manifest = _golden()
    fe = cb.CFrontend(lib, json.loads((GOLDEN / f"frontend_{preset}.json").read_text()))
    for case in manifest["cases"]:
        got = fe.clip_features(arrays[f"{case}.pcm"])
        ref = arrays[f"{case}.{preset}"]
        assert got.shape == ref.shape
        rel = np.abs(got - ref).max(axis=1) / np.maximum(1.0, np.abs(ref).max(axis=1))
        assert rel.max() < 1e-3, f"{case}: relative error {rel.max():.2e}"


def test_frontend_int8_matches_golden_except_counted_ties(lib):
    arrays, manifest = _golden()
    q = manifest["quantization"]
    scale, zp = q["scale"], q["zero_point"]
    fe = cb.CFrontend(lib, json.loads((GOLDEN / "frontend_mfcc10.json").read_text()))
    near_tie = 0
    for case in manifest["cases"]:
        fe.clip_features(arrays[f"{case}.pcm"])
        got = fe.features_int8(scale, zp)
        ref = arrays[f"{case}.mfcc10.int8"]
        # the C quantiser on the host's own features is exact
        np.testing.assert_array_equal(fe.quantize(arrays[f"{case}.mfcc10"], scale, zp), ref)
        diff = got.astype(int) - ref
        assert np.abs(diff).max() <= 1
        if diff.any():
            # only where the host value lies within float32 noise of a rounding boundary
            t = arrays[f"{case}.mfcc10"][diff != 0] / scale + zp + 0.5
            assert np.all(np.abs(t - np.round(t)) < 1e-3)
            near_tie += int(np.count_nonzero(diff))
    assert near_tie <= 3


def test_streaming_window_equals_clip_features(lib):
    arrays, _ = _golden()
    spec = json.loads((GOLDEN / "frontend_mfcc10.json").read_text())
    fe = cb.CFrontend(lib, spec)
    pcm = np.concatenate([arrays["vowel_word.pcm"], arrays["chirps_noise.pcm"]])
    fe.reset()
    produced, at, sizes = 0, 0, [1, 7, 320, 333, 1000, 4096]
    for i in range(10_000):
        n = sizes[i % len(sizes)]
        produced += fe.push(pcm[at : at + n])
        at += n
        if at >= 16000 + 12 * 320 and produced >= 49 + 12:
            break
    total = 1 + (at - 480) // 320
    assert produced == total and fe.frames_ready == 49
    start = (total - 49) * 320
    expected = fe.clip_features(pcm[start : start + 16000])
    fe.reset()
    fe.push(pcm[:at])
    np.testing.assert_array_equal(fe.features(), expected)


def _stream(arrays):
    return np.concatenate([arrays["vowel_word.pcm"], arrays["chirps_noise.pcm"], arrays["vowel_word.pcm"]])


@pytest.mark.parametrize("preset", ["mfcc10", "mfcc13", "logmel40"])
def test_int8_rolling_window_equals_quantising_the_float_one(lib, preset):
    """The board keeps the rolling window as int8 (a quarter of the memory): every read must
    equal quantising the float window, at every point of a stream."""
    arrays, manifest = _golden()
    q = manifest["quantization"]
    spec = json.loads((GOLDEN / f"frontend_{preset}.json").read_text())
    as_float = cb.CFrontend(lib, spec)
    as_int8 = cb.CFrontend(lib, spec, quantization=(q["scale"], q["zero_point"]))
    assert as_int8.mem_size <= as_float.mem_size - 3 * as_float.n_frames * as_float.n_coeffs + 8  # + alignment
    pcm = _stream(arrays)
    for at in range(0, len(pcm), 1111):
        assert as_float.push(pcm[at : at + 1111]) == as_int8.push(pcm[at : at + 1111])
        np.testing.assert_array_equal(as_int8.features_int8(q["scale"], q["zero_point"]),
                                      as_float.features_int8(q["scale"], q["zero_point"]))
    with pytest.raises(cb.KwsError, match="kept as int8"):
        as_int8.features()
    with pytest.raises(cb.KwsError, match="another quantisation"):
        as_int8.features_int8(q["scale"] * 2, q["zero_point"])
    with pytest.raises(cb.KwsError):
        cb.CFrontend(lib, spec, quantization=(0.0, 0))
    with pytest.raises(cb.KwsError):
        cb.CFrontend(lib, spec, quantization=(q["scale"], 128))


def test_frame_scratch_on_the_stack_or_in_memory_gives_the_same_features(lib):
    """A frame's scratch is on the C stack when it fits KWS_FRONTEND_STACK_BYTES, else in
    the front end's memory: both paths compute the same bits."""
    arrays, _ = _golden()
    in_memory = cb.KwsLib(cb.build_shared(extra_flags=("-DKWS_FRONTEND_STACK_BYTES=64",)))
    pcm = _stream(arrays)
    for preset in ("mfcc10", "logmel40"):
        spec = json.loads((GOLDEN / f"frontend_{preset}.json").read_text())
        on_stack, in_mem = cb.CFrontend(lib, spec), cb.CFrontend(in_memory, spec)
        assert on_stack.heap_scratch_bytes == 0 and in_mem.heap_scratch_bytes > 2048
        assert in_mem.mem_size == on_stack.mem_size + in_mem.heap_scratch_bytes
        for at in range(0, len(pcm), 4000):
            on_stack.push(pcm[at : at + 4000])
            in_mem.push(pcm[at : at + 4000])
            np.testing.assert_array_equal(on_stack.features(), in_mem.features())
        np.testing.assert_array_equal(on_stack.frame(pcm[:480]), in_mem.frame(pcm[:480]))


@pytest.mark.parametrize("preset", ["mfcc10", "mfcc13", "logmel40"])
def test_front_end_memory_twin_equals_the_c_allocation(lib, preset):
    """kws_frontend_memory (budgets, simulate) computes what kws_frontend_mem_size asks for."""
    from kws_kit.kws_frontend_memory import kws_frontend_mem_bytes

    spec = json.loads((GOLDEN / f"frontend_{preset}.json").read_text())
    for quantization in (None, (0.25, -3)):
        fe = cb.CFrontend(lib, spec, quantization=quantization)
        assert kws_frontend_mem_bytes(spec, pointer_bytes=8, int8_frames=quantization is not None) == fe.mem_size
    in_memory = cb.KwsLib(cb.build_shared(extra_flags=("-DKWS_FRONTEND_STACK_BYTES=64",)))
    assert kws_frontend_mem_bytes(spec, 8, int8_frames=False, stack_bytes=64) == cb.CFrontend(in_memory, spec).mem_size


def _frontend_struct_size(cc: str, flags: list[str], tmp_path) -> int:
    return cb.probe_sizes(cc, flags, '#include "kws_frontend.c"', ["sizeof(struct kws_frontend)"], tmp_path)[0]


def test_front_end_struct_sizes_of_the_twin(tmp_path):
    from kws_kit.kws_frontend_memory import KWS_FRONTEND_STRUCT_BYTES

    assert _frontend_struct_size(cb.compiler(), [], tmp_path) == KWS_FRONTEND_STRUCT_BYTES[8]
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
    assert _frontend_struct_size("arm-none-eabi-gcc", flags, tmp_path) == KWS_FRONTEND_STRUCT_BYTES[4]


def test_frontend_rejects_bad_tables(lib):
    spec = json.loads((GOLDEN / "frontend_mfcc10.json").read_text())
    spec["tables"]["mel_starts"][3] = 300
    with pytest.raises(cb.KwsError):
        cb.CFrontend(lib, spec)


def test_damaged_models_are_errors_not_crashes(lib, zoo_tflite):
    good = zoo_tflite["tds_resnet"]
    rng = np.random.default_rng(0)
    blobs = [b"", b"TFL3", good[:4] + b"XXXX" + good[8:], rng.bytes(3000)]
    blobs += [good[:cut] for cut in (8, 16, 64, 500, len(good) // 2, len(good) - 1)]
    blobs += [good[:8] + rng.bytes(600) for _ in range(20)]
    for blob in blobs:
        with pytest.raises(cb.KwsError) as err:
            lib.load(blob, 200_000)
        assert "]" in str(err.value) and len(str(err.value)) > 6


def test_unsupported_op_is_named(lib):
    keras = pytest.importorskip("keras")
    from kws_kit.quantize import to_int8_tflite

    inputs = keras.Input((12, 4, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Softmax()(keras.layers.Dense(3)(x))
    rep = np.random.default_rng(0).normal(size=(24, 12, 4, 1)).astype(np.float32)
    blob = to_int8_tflite(keras.Model(inputs, outputs), rep, allowed_ops=None or {"CONV_2D", "TANH", "MEAN",
                                                                                 "FULLY_CONNECTED", "SOFTMAX"})
    with pytest.raises(cb.KwsError, match=r"\[2\] op 1: builtin operator 28 is not supported"):
        lib.load(blob, 100_000)
