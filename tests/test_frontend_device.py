"""The board front end (device/kwsrt/frontend.py) against the golden vectors.

Under CPython (numpy, float32 arrays) always; under a MicroPython build with ulab
when KWS_MICROPYTHON names one (the stock `micropython` has no ulab).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frontend_helpers import GOLDEN, relative_error  # noqa: E402

from kws_kit import golden
from kws_kit.device.kwsrt.frontend import StreamingFrontend
from kws_kit.frontend import PRESETS, Frontend

DEVICE_MODULE = Path(__file__).resolve().parents[1] / "device/kwsrt/frontend.py"


@pytest.fixture(scope="module")
def committed():
    return golden.load(GOLDEN)


def _bundle(name: str) -> dict:
    return json.loads((GOLDEN / f"frontend_{name}.json").read_text())


def tie_tolerant_compare(device_q, host_features, device_features, scale, zero_point):
    """int8 values must be equal except where host and device floats straddle a rounding
    boundary (a tie within their float difference); returns how many such ties moved."""
    device_q = np.asarray(device_q, dtype=np.int16).reshape(host_features.shape)
    host_q = golden_quantize(host_features, scale, zero_point)
    differ = np.flatnonzero(device_q.ravel() != host_q.ravel())
    if differ.size == 0:
        return 0
    t_host = host_features.ravel()[differ].astype(np.float64) / scale + zero_point + 0.5
    t_dev = device_features.ravel()[differ].astype(np.float64) / scale + zero_point + 0.5
    assert np.all(np.abs(device_q.ravel()[differ] - host_q.ravel()[differ]) == 1)
    # The rounding boundary lies within the host/device float difference plus float32
    # rounding (spacing 8e-6 near 100) of the host value: a tie the two may resolve apart.
    distance = np.abs(t_host - np.round(t_host))
    assert np.all(distance <= np.abs(t_host - t_dev) + 1e-5), (t_host, t_dev)
    return int(differ.size)


def golden_quantize(x, scale, zero_point):
    from kws_kit.frontend import quantize_features

    return quantize_features(x, scale, zero_point).astype(np.int16)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_hop_by_hop_matches_golden(name, committed):
    arrays, manifest = committed
    q = manifest["quantization"]
    ties = 0
    for case in manifest["cases"]:
        fe = StreamingFrontend(_bundle(name), q["scale"], q["zero_point"])
        pcm = arrays[f"{case}.pcm"]
        new = [fe.push(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
        # Frame k completes once k*320 + 480 samples are in: the second hop gives frame 0.
        assert new[:3] == [0, 1, 1] and sum(new) == 49 and fe.ready()
        features = fe.features()
        assert features.shape == PRESETS[name].feature_shape
        assert relative_error(features, arrays[f"{case}.{name}"]) <= 1e-3, case
        np.testing.assert_array_equal(fe.last_frame(), features[-1])
        if name == "mfcc10":
            device_q = np.frombuffer(bytes(fe.features_int8()), dtype=np.int8)
            ties += tie_tolerant_compare(device_q, arrays[f"{case}.mfcc10"], features, q["scale"], q["zero_point"])
            # Exactly the host formula applied to the device's own floats.
            np.testing.assert_array_equal(device_q.reshape(49, 10), golden_quantize(features, q["scale"], q["zero_point"]))
    assert ties <= 2


def test_push_sizes_and_input_types_agree(committed):
    arrays, _ = committed
    pcm = arrays["vowel_word.pcm"]
    reference = StreamingFrontend(_bundle("mfcc10"))
    reference.push(pcm)
    expected = reference.features()
    for size in (1, 7, 160, 333, 4000):
        fe = StreamingFrontend(_bundle("mfcc10"))
        for i in range(0, len(pcm), size):
            fe.push(pcm[i : i + size])
        np.testing.assert_array_equal(fe.features(), expected)
    fe = StreamingFrontend(_bundle("mfcc10"))
    fe.push(pcm[:8000].astype("<i2").tobytes())
    fe.push(pcm[8000:].tolist())
    np.testing.assert_array_equal(fe.features(), expected)


def test_long_stream_rolls_without_recomputing(committed):
    arrays, _ = committed
    stream = np.concatenate([arrays["chirps_noise.pcm"], arrays["vowel_word.pcm"], arrays["sine_sweep.pcm"][:7000]])
    host = Frontend().stream_features(stream)
    fe = StreamingFrontend(_bundle("mfcc10"))
    seen = 0
    for i in range(0, len(stream), 320):
        seen += fe.push(stream[i : i + 320])
        if fe.ready() and seen % 17 == 0:
            assert relative_error(fe.features(), host[seen - 49 : seen]) <= 1e-3
    assert seen == len(host) == fe.frames_done
    assert relative_error(fe.features(), host[-49:]) <= 1e-3
    fe.reset()
    assert not fe.ready() and fe.push(stream[:480]) == 1


def test_band_loop_fallback_matches(committed, monkeypatch):
    """Firmware without np.take (ulab < 6.6) sums bands in a loop: same features."""
    import kws_kit.device.kwsrt.frontend as device_frontend

    arrays, _ = committed
    pcm = arrays["chirps_noise.pcm"]
    vectorised = StreamingFrontend(_bundle("mfcc13"))
    vectorised.push(pcm)
    monkeypatch.setattr(device_frontend, "HAS_TAKE", False)
    looped = StreamingFrontend(_bundle("mfcc13"))
    assert not looped._use_take
    looped.push(pcm)
    assert relative_error(looped.features(), vectorised.features()) <= 1e-5
    assert relative_error(looped.features(), arrays["chirps_noise.mfcc13"]) <= 1e-3


def test_bad_config_is_refused():
    config = _bundle("mfcc10")
    with pytest.raises(ValueError, match="version"):
        StreamingFrontend({**config, "version": 2})
    with pytest.raises(ValueError, match="window"):
        StreamingFrontend({**config, "window": "hamming"})
    with pytest.raises(ValueError, match="input_scale"):
        StreamingFrontend(config).features_int8()


MICROPYTHON_SCRIPT = r"""
import sys, json
sys.path.insert(0, sys.argv[1])
import frontend
from ulab import numpy as np
config = json.load(open(sys.argv[2]))
q = json.load(open(sys.argv[3]))
fe = frontend.StreamingFrontend(config, q["scale"], q["zero_point"])
data = open(sys.argv[4], "rb").read()
pcm = np.frombuffer(data, dtype=np.int16)
for i in range(0, len(pcm), 320):
    fe.push(pcm[i:i + 320])
f = fe.features()
out = {"features": [[float(f[r, c]) for c in range(fe.n_coeffs)] for r in range(fe.n_frames)],
       "int8": [b - 256 if b > 127 else b for b in fe.features_int8()], "frames": fe.frames_done}
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.environ.get("KWS_MICROPYTHON"), reason="set KWS_MICROPYTHON to a micropython with ulab")
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_under_micropython_ulab(name, committed, tmp_path):
    arrays, manifest = committed
    q = manifest["quantization"]
    (tmp_path / "frontend.json").write_text(json.dumps(_bundle(name)))
    (tmp_path / "q.json").write_text(json.dumps(q))
    (tmp_path / "run.py").write_text(MICROPYTHON_SCRIPT)
    ties = 0
    for case in manifest["cases"]:
        (tmp_path / "pcm.bin").write_bytes(arrays[f"{case}.pcm"].astype("<i2").tobytes())
        result = subprocess.run(
            [os.environ["KWS_MICROPYTHON"], "-X", "heapsize=4M", str(tmp_path / "run.py"), str(DEVICE_MODULE.parent),
             str(tmp_path / "frontend.json"), str(tmp_path / "q.json"), str(tmp_path / "pcm.bin")],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        features = np.array(out["features"], dtype=np.float32)
        assert out["frames"] == 49
        assert relative_error(features, arrays[f"{case}.{name}"]) <= 1e-3, case
        if name == "mfcc10":
            ties += tie_tolerant_compare(out["int8"], arrays[f"{case}.mfcc10"], features, q["scale"], q["zero_point"])
    assert ties <= 3
