"""The curated dataset on disk: ``manifest.csv`` (one row per example) and ``dataset.json``.

Each row says how to *render* one 1 s example: which clip (path, offset,
duration), shifted by how many samples, at what gain, mixed with which noise
segment at what SNR. Rendering is deterministic, so the manifest is the
dataset; ``--materialize`` only writes the rendered WAVs as a convenience.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import DataError
from .common import SPLITS, fmt_float

MANIFEST = "manifest.csv"
DATASET_JSON = "dataset.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ManifestRow:
    id: str
    split: str
    label: str
    word: str
    source: str
    speaker: str
    path: str  # absolute path of the speech clip; "" for _silence_ rows
    offset_s: float
    duration_s: float
    noise_path: str  # "" when no noise is mixed in
    noise_offset_s: float
    snr_db: float | None  # None: no noise (for _silence_ rows the noise *is* the content)
    gain_db: float
    shift_samples: int
    wav: str  # relative path of the rendered WAV when materialised, else ""

    def to_csv(self) -> list[str]:
        return [
            self.id,
            self.split,
            self.label,
            self.word,
            self.source,
            self.speaker,
            self.path,
            fmt_float(self.offset_s),
            fmt_float(self.duration_s),
            self.noise_path,
            fmt_float(self.noise_offset_s),
            "" if self.snr_db is None else fmt_float(self.snr_db, 2),
            fmt_float(self.gain_db, 2),
            str(self.shift_samples),
            self.wav,
        ]

    @classmethod
    def from_csv(cls, values: list[str]) -> "ManifestRow":
        (id_, split, label, word, source, speaker, path, off, dur, npath, noff, snr, gain, shift, wav) = values
        return cls(
            id_,
            split,
            label,
            word,
            source,
            speaker,
            path,
            float(off or 0),
            float(dur or 0),
            npath,
            float(noff or 0),
            float(snr) if snr != "" else None,
            float(gain or 0),
            int(shift or 0),
            wav,
        )

    def normalised(self) -> "ManifestRow":
        """The row exactly as it reads back from the CSV (floats rounded as written)."""
        return ManifestRow.from_csv(self.to_csv())


COLUMNS = [f.name for f in fields(ManifestRow)]


def manifest_text(rows: list[ManifestRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(row.to_csv())
    return buffer.getvalue()


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != COLUMNS:
                raise DataError(f"{path}: not a kws-kit manifest (unexpected columns)")
            rows = []
            for number, values in enumerate(reader, start=2):
                if len(values) != len(COLUMNS):
                    raise DataError(f"{path}:{number}: expected {len(COLUMNS)} columns, found {len(values)}")
                try:
                    rows.append(ManifestRow.from_csv(values))
                except ValueError as exc:
                    raise DataError(f"{path}:{number}: bad value ({exc})") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return rows


@dataclass(frozen=True)
class NoiseRegion:
    """A stretch of a noise file reserved for one split (seconds at 16 kHz)."""

    path: str
    source: str
    split: str
    start_s: float
    end_s: float

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "source": self.source,
            "split": self.split,
            "start_s": float(fmt_float(self.start_s)),
            "end_s": float(fmt_float(self.end_s)),
        }


@dataclass
class CuratedDataset:
    """A curated dataset as the training and evaluation code sees it."""

    root: Path
    keywords: list[str]
    labels: list[str]  # model output order: _silence_, _unknown_, keywords...
    rows: list[ManifestRow]
    noise_regions: list[NoiseRegion]
    meta: dict

    def rows_for(self, split: str) -> list[ManifestRow]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
        return [r for r in self.rows if r.split == split]

    def label_index(self, label: str) -> int:
        return self.labels.index(label)

    def label_ids(self, rows: list[ManifestRow]):
        """Integer class ids (positions in ``labels``) of ``rows``, as a numpy array."""
        import numpy as np

        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[r.label] for r in rows], dtype=np.int64)


def load_curated(path: str | os.PathLike) -> CuratedDataset:
    """Open a folder written by ``kws-kit data curate`` (or its manifest.csv / dataset.json)."""
    root = Path(path)
    if root.is_file():
        root = root.parent
    meta_path = root / DATASET_JSON
    if not root.is_dir() or not meta_path.is_file() or not (root / MANIFEST).is_file():
        raise DataError(
            f"{path} is not a curated dataset (needs {DATASET_JSON} and {MANIFEST})",
            hint="make one with `kws-kit data curate`",
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {meta_path}: {exc}") from exc
    if meta.get("version", 0) > FORMAT_VERSION:
        raise DataError(f"{meta_path}: dataset format {meta.get('version')} is newer than this kws-kit understands")
    try:
        labels = list(meta["labels"])
        keywords = list(meta["keywords"])
    except (KeyError, TypeError) as exc:
        raise DataError(f"{meta_path}: missing 'labels' or 'keywords'") from exc
    rows = read_manifest(root / MANIFEST)
    unknown = sorted({r.label for r in rows} - set(labels))
    if unknown:
        raise DataError(f"{root / MANIFEST}: labels {unknown} are not in {DATASET_JSON}")
    regions = [
        NoiseRegion(r["path"], r.get("source", ""), r["split"], float(r["start_s"]), float(r["end_s"]))
        for r in meta.get("noise_regions", [])
    ]
    return CuratedDataset(root.resolve(), keywords, labels, rows, regions, meta)


def dumps_json(data) -> str:
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


__all__ = [
    "ManifestRow",
    "NoiseRegion",
    "CuratedDataset",
    "load_curated",
    "read_manifest",
    "manifest_text",
    "COLUMNS",
]
