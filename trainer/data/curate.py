"""Curating a keyword-spotting dataset from any mix of sources.

``curate`` turns source folders into a speaker-disjoint, reproducible dataset:

- classes in model output order: ``_silence_``, ``_unknown_``, then the keywords;
- ``_unknown_`` samples the other words evenly; ``_silence_`` is background noise
  at random gain (some near digital silence);
- background noise is mixed into speech with probability ``noise_prob`` at a
  random SNR, and every noise file is split *in time* between the splits (or,
  for short files, assigned whole), so test noise is never heard in training;
- the same inputs and seed give a byte-identical manifest.

Public API used by training and evaluation: :func:`load_curated`,
:func:`render`, :func:`render_many`, :func:`scan_sources` (re-exported here).
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__, atomic, progress
from ..errors import AudioError, DataError
from .common import CLIP_SAMPLES, SAMPLE_RATE, SILENCE, SPLITS, UNKNOWN, Clip, NoiseFile, Rejected, fmt_float, hash_splits
from .manifest import (
    DATASET_JSON,
    FORMAT_VERSION,
    MANIFEST,
    CuratedDataset,
    ManifestRow,
    NoiseRegion,
    dumps_json,
    load_curated,
    manifest_text,
)
from .mix import load_noise, materialize, render, render_many
from .scan import ScanResult, scan, scan_sources

__all__ = [
    "CurateOptions",
    "curate",
    "load_curated",
    "render",
    "render_many",
    "scan_sources",
    "noise_regions",
    "CuratedDataset",
    "ManifestRow",
    "NoiseRegion",
]

# A noise file at least this long is split in time (70/10/20 %); shorter ones go whole to one split.
LONG_NOISE_S = 10.0
NOISE_SPLIT = {"train": (0.0, 0.7), "validation": (0.7, 0.8), "test": (0.8, 1.0)}
NEAR_SILENCE_SHARE = 0.1  # of _silence_ examples, rendered 50-70 dB down (near digital silence)


@dataclass
class CurateOptions:
    keywords: list[str]
    sources: list[str]
    out: str
    seed: int = 0
    unknown_share: float = 1.0  # x the size of an average keyword class (per split)
    silence_share: float = 1.0
    snr_db: tuple[float, float] = (0.0, 20.0)
    noise_prob: float = 0.8
    gain_db: tuple[float, float] = (-6.0, 3.0)
    silence_gain_db: tuple[float, float] = (-30.0, 0.0)
    max_shift_ms: float = 100.0
    noise_dirs: list[str] = field(default_factory=list)
    materialize: bool = False
    max_per_class: int | None = None
    split_by: str = "auto"
    overwrite: bool = False
    workers: int | None = None


def normalise_keywords(keywords: Sequence[str]) -> list[str]:
    out: list[str] = []
    for k in keywords:
        word = k.strip().lower()
        if not word:
            continue
        if word.startswith(("_", ".")) or "/" in word:
            raise DataError(f"invalid keyword {k!r}", hint="keywords are word folder names such as 'go'")
        if word in out:
            raise DataError(f"keyword {word!r} given twice")
        out.append(word)
    if not out:
        raise DataError("no keywords given", hint="pass --keywords go,stop")
    return out


def noise_regions(noise_files: Sequence[NoiseFile]) -> list[NoiseRegion]:
    """Reserve part of every noise file for each split.

    Files of ``LONG_NOISE_S`` or more are cut in time: the first 70 % for
    training, the next 10 % for validation, the last 20 % for test. Shorter
    files (e.g. pre-cut one-second ``_silence_`` clips) are assigned whole by a
    stable hash of their name (about 70/10/20 by count).
    """
    regions: list[NoiseRegion] = []
    short: dict[str, NoiseFile] = {}
    for nf in sorted(noise_files, key=lambda n: n.path):
        samples = int(math.floor(nf.duration_s * SAMPLE_RATE))
        if nf.duration_s >= LONG_NOISE_S:
            for split, (a, b) in NOISE_SPLIT.items():
                start, end = int(math.floor(a * samples)), int(math.floor(b * samples))
                regions.append(NoiseRegion(nf.path, nf.source, split, start / SAMPLE_RATE, end / SAMPLE_RATE))
        elif samples > 0:
            key = f"{nf.source}/{Path(nf.path).parent.name}/{Path(nf.path).name}"
            short[key] = nf
    assignment = hash_splits({k: 1 for k in short}, validation_share=0.1, test_share=0.2)
    for key, nf in sorted(short.items(), key=lambda kv: kv[1].path):
        samples = int(math.floor(nf.duration_s * SAMPLE_RATE))
        regions.append(NoiseRegion(nf.path, nf.source, assignment[key], 0.0, samples / SAMPLE_RATE))
    return regions


class _NoisePicker:
    """Random noise segments from one split's regions, each second of noise equally likely."""

    def __init__(self, regions: list[NoiseRegion]):
        self.regions = regions
        self.start_s = np.array([r.start_s for r in regions], dtype=np.float64)
        self.end_s = np.array([r.end_s for r in regions], dtype=np.float64)
        self.cumulative = np.cumsum(self.end_s - self.start_s)

    def __bool__(self) -> bool:
        return bool(self.regions)

    def pick(self, rng: np.random.Generator, n: int) -> tuple[list[NoiseRegion], list[float]]:
        """``n`` random (region, offset_s) pairs, drawn in one go."""
        if n == 0:
            return [], []
        u = rng.random(n) * self.cumulative[-1]
        index = np.minimum(np.searchsorted(self.cumulative, u, side="right"), len(self.regions) - 1)
        start = np.round(self.start_s[index] * SAMPLE_RATE).astype(np.int64)
        end = np.round(self.end_s[index] * SAMPLE_RATE).astype(np.int64)
        offsets = rng.integers(start, np.maximum(start, end - CLIP_SAMPLES) + 1)
        return [self.regions[i] for i in index], [round(int(o) / SAMPLE_RATE, 7) for o in offsets]


def _even_quotas(available: dict[str, int], total: int, rng: np.random.Generator) -> dict[str, int]:
    """Split ``total`` over words as evenly as their clip counts allow (water-filling)."""
    quotas = {w: 0 for w in available}
    remaining = min(total, sum(available.values()))
    open_words = sorted(w for w, n in available.items() if n > 0)
    while remaining > 0 and open_words:
        share, extra = divmod(remaining, len(open_words))
        lucky = set(rng.choice(open_words, size=extra, replace=False).tolist()) if extra else set()
        for w in open_words:
            give = min(share + (1 if w in lucky else 0), available[w] - quotas[w])
            quotas[w] += give
            remaining -= give
        open_words = [w for w in open_words if quotas[w] < available[w]]
    return quotas


def _sample(items: list, n: int, rng: np.random.Generator) -> list:
    if n >= len(items):
        return list(items)
    chosen = np.sort(rng.choice(len(items), size=n, replace=False))
    return [items[i] for i in chosen]


def _clip_key(c: Clip) -> tuple:
    return (c.word, c.path, c.offset_s)


def build_rows(opts: CurateOptions, scanned: ScanResult, regions: list[NoiseRegion]) -> list[ManifestRow]:
    """The manifest rows, fully determined by the scan, the regions and the options."""
    rng = np.random.default_rng(opts.seed)
    keywords = opts.keywords
    labels = [SILENCE, UNKNOWN, *keywords]
    by_split_word: dict[tuple[str, str], list[Clip]] = defaultdict(list)
    for c in sorted(scanned.clips, key=_clip_key):
        by_split_word[(c.split, c.word)].append(c)
    totals = Counter(c.split for c in scanned.clips if c.word in keywords)
    total_kw = sum(totals.values()) or 1
    max_shift = int(round(opts.max_shift_ms / 1000 * SAMPLE_RATE))
    pickers = {s: _NoisePicker([r for r in regions if r.split == s]) for s in SPLITS}
    rows: list[ManifestRow] = []

    # Floats are rounded exactly as the CSV writes them (round() and "%.7f" agree), so the
    # rows rendered now are the rows that load_curated() reads back.
    def wav_path(split: str, label: str, row_id: str) -> str:
        return f"wav/{split}/{label}/{row_id}.wav" if opts.materialize else ""

    def cap_for(split: str) -> int | None:
        if opts.max_per_class is None:
            return None
        return max(1, int(round(opts.max_per_class * totals[split] / total_kw))) if totals[split] else 0

    for split in SPLITS:
        cap = cap_for(split)
        per_label: dict[str, list[Clip]] = {}
        for kw in keywords:
            clips = by_split_word.get((split, kw), [])
            per_label[kw] = _sample(clips, cap, rng) if cap is not None else clips
        average = float(np.mean([len(per_label[k]) for k in keywords])) if keywords else 0.0
        n_unknown = int(round(opts.unknown_share * average))
        n_silence = int(round(opts.silence_share * average))
        if cap is not None:
            n_unknown, n_silence = min(n_unknown, cap), min(n_silence, cap)
        others = sorted({w for (s, w) in by_split_word if s == split and w not in keywords})
        quotas = _even_quotas({w: len(by_split_word[(split, w)]) for w in others}, n_unknown, rng)
        per_label[UNKNOWN] = [c for w in others for c in _sample(by_split_word[(split, w)], quotas[w], rng)]
        picker = pickers[split]
        for label in labels:
            # All random draws of a class happen in one go, in a fixed order.
            if label == SILENCE:
                n = n_silence
                near_digital_silence = rng.random(n) < NEAR_SILENCE_SHARE
                gains = np.where(near_digital_silence, rng.uniform(-70.0, -50.0, n), rng.uniform(*opts.silence_gain_db, n))
                regions_, offsets = picker.pick(rng, n) if picker else ([None] * n, [0.0] * n)
                for k in range(n):
                    row_id = f"{split}-{label}-{k:05d}"
                    region = regions_[k]
                    rows.append(
                        ManifestRow(
                            row_id, split, label, "", region.source if region else "", "", "", 0.0, 0.0,
                            region.path if region else "", offsets[k], None, round(float(gains[k]), 2), 0,
                            wav_path(split, label, row_id),
                        )
                    )
                continue
            clips = per_label[label]
            n = len(clips)
            gains = rng.uniform(*opts.gain_db, n)
            shifts = rng.integers(-max_shift, max_shift + 1, n) if max_shift else np.zeros(n, dtype=np.int64)
            noisy = (rng.random(n) < opts.noise_prob) if picker else np.zeros(n, dtype=bool)
            regions_, offsets = picker.pick(rng, int(noisy.sum())) if picker else ([], [])
            snrs = rng.uniform(*opts.snr_db, len(regions_))
            noise_index = np.cumsum(noisy) - 1
            for k, clip in enumerate(clips):
                row_id = f"{split}-{label}-{k:05d}"
                if noisy[k]:
                    j = noise_index[k]
                    noise_path, noise_offset, snr = regions_[j].path, offsets[j], round(float(snrs[j]), 2)
                else:
                    noise_path, noise_offset, snr = "", 0.0, None
                rows.append(
                    ManifestRow(
                        row_id, split, label, clip.word, clip.source, clip.speaker, clip.path,
                        round(clip.offset_s, 7), round(clip.duration_s, 7), noise_path, noise_offset,
                        snr, round(float(gains[k]), 2), int(shifts[k]), wav_path(split, label, row_id),
                    )
                )
    return rows


def _counts(rows: list[ManifestRow], labels: list[str]) -> dict[str, dict[str, int]]:
    counts = {s: {label: 0 for label in labels} for s in SPLITS}
    for r in rows:
        counts[r.split][r.label] += 1
    return counts


def build_report(opts: CurateOptions, scanned: ScanResult, rows: list[ManifestRow], failed: dict[str, str]) -> dict:
    labels = [SILENCE, UNKNOWN, *opts.keywords]
    speakers = {s: sorted({r.speaker for r in rows if r.split == s and r.speaker}) for s in SPLITS}
    owner: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.speaker:
            owner[r.speaker].add(r.split)
    shared = sorted(s for s, splits in owner.items() if len(splits) > 1)
    reasons = Counter(_reason_kind(r.reason) for r in scanned.rejected)
    unknown_words = {s: dict(sorted(Counter(r.word for r in rows if r.split == s and r.label == UNKNOWN).items())) for s in SPLITS}
    warnings = list(scanned.warnings)
    counts = _counts(rows, labels)
    for s in SPLITS:
        for kw in opts.keywords:
            if counts[s][kw] == 0:
                warnings.append(f"keyword '{kw}' has no examples in the {s} split")
    return {
        "counts": counts,
        "totals": {s: sum(counts[s].values()) for s in SPLITS},
        "speakers": {s: len(v) for s, v in speakers.items()},
        "speakers_in_several_splits": shared,
        "unknown_words": unknown_words,
        "noisy_share": {
            s: round(sum(1 for r in rows if r.split == s and r.snr_db is not None)
                     / max(1, sum(1 for r in rows if r.split == s and r.label != SILENCE)), 3)
            for s in SPLITS
        },
        "rejected": [{"path": r.path, "reason": r.reason, "source": r.source} for r in scanned.rejected]
        + [{"path": rid, "reason": f"could not be rendered: {why}", "source": ""} for rid, why in sorted(failed.items())],
        "rejected_by_reason": dict(sorted(reasons.items())),
        "warnings": warnings,
    }


def _reason_kind(reason: str) -> str:
    return reason.split(" (", 1)[0]


def _report_markdown(opts: CurateOptions, meta: dict, report: dict) -> str:
    labels = meta["labels"]
    lines = [
        "# Curated dataset report",
        "",
        f"Keywords: {', '.join(opts.keywords)}; seed {opts.seed}; split by {opts.split_by}.",
        f"Noise mixed into {opts.noise_prob:.0%} of speech examples at SNR {fmt_float(opts.snr_db[0], 2)}"
        f"..{fmt_float(opts.snr_db[1], 2)} dB; {len(meta['noise_regions'])} noise regions.",
        "",
        "## Examples per class and split",
        "",
        "| class | " + " | ".join(SPLITS) + " |",
        "|---|" + "---:|" * len(SPLITS),
    ]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(str(report["counts"][s][label]) for s in SPLITS) + " |")
    lines.append("| **total** | " + " | ".join(str(report["totals"][s]) for s in SPLITS) + " |")
    lines.append("| distinct speakers | " + " | ".join(str(report["speakers"][s]) for s in SPLITS) + " |")
    lines += ["", f"Speakers in more than one split: {len(report['speakers_in_several_splits'])}.", "", "## Sources", ""]
    for src in meta["sources"]:
        words = src["words"]
        lines.append(
            f"- `{src['path']}` ({src['kind']}): {sum(words.values())} clips of {len(words)} words, "
            f"{src['noise_files']} noise files, {src['rejected']} rejected; split: {src['split_method'] or '-'}"
        )
    lines += ["", "## Rejected files", ""]
    if report["rejected"]:
        for reason, n in report["rejected_by_reason"].items():
            lines.append(f"- {reason}: {n}")
        lines.append("")
        for r in report["rejected"][:200]:
            lines.append(f"- `{r['path']}`: {r['reason']}")
        if len(report["rejected"]) > 200:
            lines.append(f"- ... and {len(report['rejected']) - 200} more (see report.json)")
    else:
        lines.append("None.")
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in report["warnings"]] or ["None."]
    return "\n".join(lines) + "\n"


def curate(opts: CurateOptions) -> Path:
    """Build the curated dataset described by ``opts`` in ``opts.out``; returns its path."""
    opts.keywords = normalise_keywords(opts.keywords)
    out = Path(opts.out)
    if out.exists() and not opts.overwrite:
        raise DataError(f"output folder {out} already exists", hint="choose another --out or pass --overwrite")
    lo, hi = opts.snr_db
    if lo > hi:
        raise DataError(f"--snr-db {lo},{hi}: the first value must not exceed the second")
    if not 0.0 <= opts.noise_prob <= 1.0:
        raise DataError("--noise-prob must be between 0 and 1")
    if not (0 <= opts.unknown_share < math.inf and 0 <= opts.silence_share < math.inf):
        raise DataError("--unknown-share and --silence-share must be finite and not negative")
    if opts.seed < 0:
        raise DataError(f"--seed {opts.seed}: must not be negative")
    if opts.max_per_class is not None and opts.max_per_class < 1:
        raise DataError("--max-per-class must be at least 1")

    opts.sources = _distinct_folders(opts.sources, "--source")
    opts.noise_dirs = _distinct_folders(opts.noise_dirs, "--noise")
    for folder in opts.noise_dirs:  # (scan's own message would call it a "source")
        if not Path(folder).is_dir():
            state = "is not a folder" if Path(folder).exists() else "does not exist"
            raise DataError(f"--noise {folder} {state}", hint="give a folder of background-noise recordings")
    _check_out_keeps_inputs(out, [*opts.sources, *opts.noise_dirs])

    scanned = scan(opts.sources, opts.split_by, opts.noise_dirs)
    available = scanned.words
    missing = [k for k in opts.keywords if k not in available]
    if missing:
        listing = ", ".join(available) or "none"
        raise DataError(f"keyword(s) {', '.join(missing)} not found in the sources; available words: {listing}")
    _drop_duplicate_and_broken_noise(scanned, keep_decoded=opts.materialize)
    if len(available) == len(opts.keywords) and opts.unknown_share > 0:
        scanned.warn("every word is a keyword, so the _unknown_ class is empty (add other words)")
    if not scanned.noise_files:
        scanned.warn(
            "no background noise found (_background_noise_/ or _silence_/ in a source, or --noise DIR): "
            "nothing is mixed in and _silence_ examples are digital silence"
        )
    regions = noise_regions(scanned.noise_files)
    rows = build_rows(opts, scanned, regions)
    labels = [SILENCE, UNKNOWN, *opts.keywords]

    with atomic.output_dir(out, overwrite=opts.overwrite, what="output folder") as tmp:
        failed: dict[str, str] = {}
        if opts.materialize:
            failed = materialize(rows, tmp, opts.workers)
            if failed:
                progress.warn(f"{len(failed)} examples could not be rendered and were left out (see report.md)")
                rows = [r for r in rows if r.id not in failed]
        meta = {
            "format": "kws-kit curated dataset",
            "version": FORMAT_VERSION,
            "kws_kit_version": __version__,
            "keywords": opts.keywords,
            "labels": labels,
            "sample_rate": SAMPLE_RATE,
            "clip_samples": CLIP_SAMPLES,
            "seed": opts.seed,
            "unknown_share": opts.unknown_share,
            "silence_share": opts.silence_share,
            "snr_db": list(opts.snr_db),
            "noise_prob": opts.noise_prob,
            "gain_db": list(opts.gain_db),
            "silence_gain_db": list(opts.silence_gain_db),
            "max_shift_ms": opts.max_shift_ms,
            "max_per_class": opts.max_per_class,
            "split_by": opts.split_by,
            "materialized": opts.materialize,
            "sources": [
                {
                    "path": s.path,
                    "label": s.label,
                    "kind": s.kind,
                    "split_method": s.split_method,
                    "words": s.words,
                    "noise_files": s.noise_files,
                    "rejected": s.rejected,
                }
                for s in scanned.sources
            ],
            "noise_regions": [r.to_json() for r in regions],
            "counts": _counts(rows, labels),
        }
        report = build_report(opts, scanned, rows, failed)
        (tmp / MANIFEST).write_text(manifest_text(rows), encoding="utf-8")
        (tmp / DATASET_JSON).write_text(dumps_json(meta), encoding="utf-8")
        (tmp / "report.json").write_text(dumps_json(report), encoding="utf-8")
        (tmp / "report.md").write_text(_report_markdown(opts, meta, report), encoding="utf-8")
    totals = report["totals"]
    progress.info(
        f"curated {len(rows)} examples into {out} (train {totals['train']}, validation {totals['validation']}, "
        f"test {totals['test']}; {len(scanned.rejected)} files rejected, see report.md)"
    )
    return out


def _distinct_folders(paths: Sequence[str], option: str) -> list[str]:
    """``paths`` without repeats of one folder (``data``, ``./data/``): a folder given twice would
    put every one of its clips into the dataset twice."""
    seen: dict[str, str] = {}
    for p in paths:
        key = os.path.realpath(p)
        if key in seen:
            same = "is given twice" if str(p) == str(seen[key]) else f"is the same folder as {seen[key]}"
            progress.warn(f"{option} {p} {same}; it is read once")
            continue
        seen[key] = p
    return list(seen.values())


def _check_out_keeps_inputs(out: Path, inputs: Sequence[str]) -> None:
    """Refuse an --out that is, or holds, one of the input folders: --overwrite would delete it."""
    target = Path(os.path.realpath(out))
    for folder in inputs:
        real = Path(os.path.realpath(folder))
        if real == target or real.is_relative_to(target):
            raise DataError(
                f"--out {out} is or contains the input folder {folder}; replacing it would delete your audio",
                hint="choose an --out outside the sources",
            )


def _drop_duplicate_and_broken_noise(scanned: ScanResult, keep_decoded: bool) -> None:
    """Keep each noise file once, and only if it decodes.

    A noise file is heard in many examples, so one whose header is fine but whose
    data is not (a truncated FLAC, NaN samples) would spoil all of them; it is
    decoded now and, if that fails, rejected like any other bad file. With
    ``keep_decoded`` the samples stay in the renderer's cache (worker processes
    forked later inherit them, so nothing is decoded twice).
    """
    kept: list[NoiseFile] = []
    seen: set[str] = set()
    for nf in progress.track(scanned.noise_files, "checking noise files"):
        key = os.path.realpath(nf.path)
        if key in seen:
            continue
        seen.add(key)
        try:
            load_noise(nf.path, None if keep_decoded else {})
        except AudioError as exc:
            reason = exc.reason()
            scanned.rejected.append(Rejected(nf.path, f"noise file: {reason}", nf.source))
            for info in scanned.sources:
                if info.label == nf.source:
                    info.noise_files -= 1
                    info.rejected += 1
            scanned.warn(f"noise file {nf.path} cannot be decoded ({reason}); not used")
            continue
        kept.append(nf)
    scanned.noise_files = kept


def parse_range(text: str, what: str) -> tuple[float, float]:
    """``"0,20"`` -> (0.0, 20.0); a single number gives a zero-width range."""
    try:
        values = [float(v) for v in text.replace(":", ",").split(",") if v.strip()]
    except ValueError as exc:
        raise DataError(f"{what} {text!r}: expected two numbers like 0,20") from exc
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(map(math.isfinite, values)):
        raise DataError(f"{what} {text!r}: expected two numbers like 0,20")
    return values[0], values[1]
