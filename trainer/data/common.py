"""Shared vocabulary of the data stage: clip records, speaker ids and speaker-level splits.

A *clip* is one second (or so) of one word by one speaker, described without
copying audio: a file path plus an offset and a duration inside it. Everything
downstream (curation, training, evaluation) works from these records.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000  # every model input is exactly one second at 16 kHz
SPLITS = ("train", "validation", "test")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_NOISE = "_background_noise_"
NOHASH = "_nohash_"
NOISE_FOLDERS = (BACKGROUND_NOISE, SILENCE)

# Default speaker-level split shares (the Speech Commands convention: 80/10/10).
VALIDATION_SHARE = 0.1
TEST_SHARE = 0.1


@dataclass(frozen=True)
class Clip:
    """One utterance: ``duration_s`` seconds from ``offset_s`` in ``path``."""

    path: str  # absolute
    word: str
    speaker: str
    source: str  # label of the source folder it came from
    offset_s: float = 0.0
    duration_s: float = 1.0
    split: str = ""  # "train" | "validation" | "test" once assigned
    cut: bool = False  # True when cut out of a longer recording


@dataclass(frozen=True)
class NoiseFile:
    """A background-noise recording; ``duration_s`` is its length at 16 kHz."""

    path: str
    source: str
    duration_s: float


@dataclass(frozen=True)
class Rejected:
    """A file that was skipped, and why (goes into the curation report)."""

    path: str
    reason: str
    source: str = ""


@dataclass
class SourceInfo:
    """What a scanned source folder turned out to be."""

    path: str
    label: str
    kind: str  # "speech_commands" | "synth" | "own" | "noise"
    split_method: str = ""  # "official (...)" or "speaker-hash"
    words: dict[str, int] = field(default_factory=dict)
    noise_files: int = 0
    rejected: int = 0


_TRAILING_NUMBER = re.compile(r"[\s_.\-]*\d+[\s_.\-]*$")
_SPEAKER_CHARS = re.compile(r"[^0-9A-Za-z.\-]+")


def speaker_from_path(path: Path, word_dir: Path) -> str:
    """Speaker id of a recording inside a word folder.

    In order: the ``<speaker>_nohash_`` prefix (Speech Commands convention), else
    the subfolder in ``<word>/<speaker>/file``, else the file stem with trailing
    numbers and separators removed (``alice_03.wav`` -> ``alice``).
    """
    name = path.name
    if NOHASH in name:
        speaker = name.split(NOHASH, 1)[0]
        if speaker:
            return speaker
    relative = path.relative_to(word_dir)
    if len(relative.parts) > 1:
        return relative.parts[0]
    stem = path.stem
    while True:
        stripped = _TRAILING_NUMBER.sub("", stem)
        if stripped == stem:
            break
        stem = stripped
    stem = stem.strip(" _.-")
    return stem or "anonymous"


def safe_speaker_id(name: str) -> str:
    """A speaker name usable in ``<speaker>_nohash_<n>.wav`` file names."""
    cleaned = _SPEAKER_CHARS.sub("-", name.strip()).strip("-.")
    return cleaned.replace("_", "-") or "speaker"


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) for ``text`` (same on every machine and run)."""
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_splits(
    counts: dict[str, int],
    validation_share: float = VALIDATION_SHARE,
    test_share: float = TEST_SHARE,
) -> dict[str, str]:
    """Assign whole groups (speakers, noise files) to splits by a stable hash.

    ``counts`` maps a group id to how many items it has. Each group lands in
    test if its hash is below ``test_share``, in validation if below
    ``test_share + validation_share``, else in train, so adding groups never
    moves the others. With few groups that can leave a split empty; then (and
    only then) the groups are ranked by hash and cut by cumulative item count,
    which guarantees every split a group whenever there are at least three.
    """
    groups = sorted(counts)
    hashes = {g: unit_hash(g) for g in groups}
    assigned: dict[str, str] = {}
    for g in groups:
        h = hashes[g]
        assigned[g] = "test" if h < test_share else "validation" if h < test_share + validation_share else "train"
    used = set(assigned.values())
    if len(groups) < 3 or used == set(SPLITS):
        return assigned
    ranked = sorted(groups, key=lambda g: hashes[g])
    total = sum(counts[g] for g in groups) or 1
    assigned = {}
    index = 0
    for split, share in (("test", test_share), ("validation", validation_share)):
        taken = 0
        while index < len(ranked) - 1 and (taken == 0 or taken < share * total):
            # keep at least one group for every split that is still to fill
            remaining_splits = 1 if split == "validation" else 2
            if len(ranked) - index <= remaining_splits:
                break
            assigned[ranked[index]] = split
            taken += counts[ranked[index]]
            index += 1
    for g in ranked[index:]:
        assigned[g] = "train"
    return assigned


def fmt_float(value: float, decimals: int = 7) -> str:
    """Deterministic, compact text for a float in CSV/JSON (no exponent)."""
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
