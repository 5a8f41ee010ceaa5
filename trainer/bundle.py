"""Model bundles: the one folder a board, the simulator and the laptop all run.

A bundle holds ``model.tflite`` (int8 in, int8 out), ``labels.txt``,
``frontend.json`` (front-end spec plus the tables the device needs),
``recognizer.json`` (post-processing defaults), ``metadata.json`` and
``MODEL_CARD.md``; ``float_model.tflite`` is kept for host-side comparisons and
is never copied to a board.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError

BUNDLE_FORMAT = 1
REQUIRED_FILES = ("model.tflite", "labels.txt", "frontend.json", "recognizer.json", "metadata.json")
# Files the device needs; the rest stay on the host.
DEVICE_FILES = ("model.tflite", "labels.txt", "frontend.json", "recognizer.json")

# Keyword arguments of the device Recognizer, plus how often the loop runs inference.
DEFAULT_RECOGNIZER = {
    "average_window_ms": 750,
    "detection_threshold": 0.6,
    "suppression_ms": 1500,
    "minimum_count": 2,
    "ignore_labels": ["_silence_", "_unknown_"],
    "inference_period_ms": 250,
}


@dataclass
class Bundle:
    path: Path
    labels: list[str]
    frontend: dict
    recognizer: dict
    metadata: dict
    model_bytes: bytes = field(repr=False)

    @property
    def input_scale(self) -> float:
        return float(self.metadata["input"]["scale"])

    @property
    def input_zero_point(self) -> int:
        return int(self.metadata["input"]["zero_point"])

    @property
    def keywords(self) -> list[str]:
        ignore = set(self.recognizer.get("ignore_labels", []))
        return [label for label in self.labels if label not in ignore]

    def spec(self):
        from .frontend import FrontendSpec

        return FrontendSpec.from_dict(self.frontend)

    def float_model_path(self) -> Path | None:
        p = self.path / "float_model.tflite"
        return p if p.is_file() else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable JSON ({' '.join(str(exc).split())})") from exc


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and validate a bundle; every inconsistency is a one-line ModelError."""
    from .tflite_info import inspect_tflite

    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model bundle {path} not found (expected a folder made by `kws-kit export`)")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(f"model bundle {path} is missing {', '.join(missing)}")
    metadata = _read_json(path / "metadata.json")
    if metadata.get("format") != BUNDLE_FORMAT:
        raise ModelError(
            f"model bundle {path} has format {metadata.get('format')!r}; this kws-kit reads format {BUNDLE_FORMAT}",
            hint="re-export it with this version",
        )
    labels = [line.strip() for line in (path / "labels.txt").read_text().splitlines() if line.strip()]
    frontend = _read_json(path / "frontend.json")
    from .frontend import FrontendSpec

    spec = FrontendSpec.from_dict(frontend)  # validates version and fields
    recognizer = {**DEFAULT_RECOGNIZER, **_read_json(path / "recognizer.json")}
    model_bytes = (path / "model.tflite").read_bytes()
    tinfo = inspect_tflite(model_bytes)
    n_out = int(tinfo.output_shape[-1])
    if n_out != len(labels):
        raise ModelError(f"model bundle {path}: labels.txt has {len(labels)} labels but the model has {n_out} outputs")
    expected = (1, spec.n_frames, spec.n_coeffs, 1)
    if tuple(tinfo.input_shape) != expected:
        raise ModelError(
            f"model bundle {path}: model input {tuple(tinfo.input_shape)} does not match the front end {expected}"
        )
    return Bundle(path, labels, frontend, recognizer, metadata, model_bytes)
