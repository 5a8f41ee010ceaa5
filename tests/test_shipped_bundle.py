"""The bundle shipped in models/bundles/: complete, consistent, fits every board, runs the same everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from kws_kit.boards import load_profile  # noqa: E402
from kws_kit.budget import check_fits  # noqa: E402
from kws_kit.bundle import load_bundle  # noqa: E402
from kws_kit.frontend import FrontendSpec, load_bundle_json  # noqa: E402
from kws_kit.tflite_info import inspect_tflite  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "models/bundles/yes_no_go_stop"
KEYWORDS = ["yes", "no", "go", "stop"]


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(SHIPPED)


def test_shipped_bundle_is_complete_and_self_consistent(bundle):
    assert bundle.labels == ["_silence_", "_unknown_", *KEYWORDS]
    assert bundle.keywords == KEYWORDS
    info = inspect_tflite(bundle.model_bytes, measure_tflm=False)
    assert info.input_dtype == info.output_dtype == "int8"
    assert info.output_shape[-1] == len(bundle.labels)
    assert not info.unsupported_ops()
    # the bundle's front end is today's spec version, and its stored tables are what the host computes
    spec = bundle.spec()
    assert spec.fingerprint() == bundle.metadata["frontend_fingerprint"]
    assert FrontendSpec.from_dict(spec.to_dict()) == spec
    pcm = (np.random.default_rng(0).normal(0, 3000, 16000)).astype(np.int16)
    from kws_kit.frontend import Frontend

    np.testing.assert_allclose(load_bundle_json(SHIPPED / "frontend.json").batch_features(pcm[None]),
                               Frontend(spec).batch_features(pcm[None]), rtol=1e-4, atol=1e-3)
    # the recorded sizes are this file's
    assert bundle.metadata["sizes"]["tflite_bytes"] == len(bundle.model_bytes)
    # the model card and eval reports describe this model: the mixed test split is the training
    # dataset's own test split, so its int8 accuracy is the one metadata.json recorded
    mixed = json.loads((SHIPPED / "eval_mixed/report.json").read_text())
    assert mixed["int8"]["accuracy"] == pytest.approx(bundle.metadata["accuracy"]["int8"], abs=1e-9)
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    threshold = bundle.recognizer["detection_threshold"]
    assert f"shipped threshold {threshold}" in card
    assert json.loads((SHIPPED / "eval/report.json").read_text())["stream"]["threshold"] == threshold
    assert (SHIPPED.parent / "README.md").is_file()


@pytest.mark.parametrize("board", ["nucleo", "esp32s3", "openmv"])
def test_shipped_bundle_fits_every_board(bundle, board):
    report = check_fits(inspect_tflite(bundle.model_bytes), load_profile(board))
    assert report.fits, f"{board}: over by {report.over_by_bytes} bytes"


def test_board_runner_matches_tflite_micro_on_the_shipped_model(bundle):
    pytest.importorskip("tflite_micro")
    from kws_kit.device.kwsrt import runners
    from kws_kit.quantize import run_int8

    runner = runners.UlabRunner(bundle.model_bytes)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.integers(-128, 128, size=(2, runner.input_size)),
                        np.full((1, runner.input_size), runner.input_zero_point)]).astype(np.int8)
    expected = run_int8(bundle.model_bytes, x.reshape((len(x),) + runner.input_shape[1:]), kernels="tflm")
    got = np.array([np.frombuffer(runner.invoke(row).tobytes(), dtype=np.int8) for row in x])
    np.testing.assert_array_equal(got, expected.reshape(got.shape))


def test_shipped_bundle_recognises_real_keywords(bundle, shared_speech_commands):
    """Sanity on real speech (these clips may include training speakers: the honest,
    held-out numbers are in the model card). The model must do far better than chance."""
    from kws_kit.audio_io import fit_length, load
    from kws_kit.evaluate import predict_int8
    from kws_kit.frontend import Frontend

    pcm, truth = [], []
    for k, word in enumerate(KEYWORDS):
        for wav in sorted((shared_speech_commands / word).glob("*.wav"))[:12]:
            pcm.append(fit_length(load(wav), 16000))
            truth.append(k + 2)
    feats = Frontend(bundle.spec()).batch_features(np.stack(pcm))
    pred = predict_int8(bundle.model_bytes, feats, bundle.input_scale, bundle.input_zero_point).argmax(axis=1)
    accuracy = float(np.mean(pred == np.array(truth)))
    assert accuracy >= 0.7, f"{accuracy:.2f} on {len(truth)} real keyword clips"


def test_shipped_bundle_names_no_machine_paths():
    """Reports and metadata say WORK_DIR/... and models/bundles/..., never where they were built."""
    import re

    for path in SHIPPED.rglob("*"):
        if path.suffix in (".json", ".md", ".txt"):
            found = re.findall(r"(?<![\w.])/(?:tmp|home|root|work|check|Users)/\S*", path.read_text())
            assert not found, f"{path.relative_to(SHIPPED)}: {found[:3]}"
