"""Finding clips in source folders and assigning each speaker to one split.

Three kinds of source folder are recognised, all organised by word:

- **speech_commands**: has ``_background_noise_/`` or official split lists;
- **synth**: made by ``kws-kit data synth`` (has ``synth.json``);
- **own**: anything else of the form ``<word>/<files>`` or ``<word>/<speaker>/<files>``.

Files are checked from their headers only (``soundfile.info``), so scanning
thousands of clips is quick; only recordings longer than 1.5 s are decoded,
to cut them into one clip per utterance. Unreadable files are skipped and
reported, never fatal.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import soundfile as sf

from .. import audio_io, progress
from ..errors import AudioError, DataError
from . import own, speech_commands, wavfile
from .common import (
    NOHASH,
    NOISE_FOLDERS,
    SPLITS,
    Clip,
    NoiseFile,
    Rejected,
    SourceInfo,
    hash_splits,
    speaker_from_path,
)

SPLIT_METHODS = ("auto", "official", "speaker-hash")
MIN_CLIP_S = 0.05  # shorter files cannot hold a word
MIN_OFFICIAL_SHARE = 0.02  # auto mode: official validation/test lists must hold at least this share


@dataclass
class ScanResult:
    clips: list[Clip] = field(default_factory=list)
    noise_files: list[NoiseFile] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    sources: list[SourceInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        progress.warn(message)

    @property
    def words(self) -> dict[str, int]:
        return dict(sorted(Counter(c.word for c in self.clips).items()))


def detect_kind(root: Path) -> str:
    if (root / "synth.json").is_file():
        return "synth"
    if speech_commands.looks_like_speech_commands(root):
        return "speech_commands"
    return "own"


def _audio_files(folder: Path, max_depth: int) -> list[str]:
    """Audio file paths (strings: pathlib is slow over thousands of files) up to ``max_depth`` deep, sorted."""
    out: list[str] = []
    base_depth = str(folder).rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(folder):
        depth = dirpath.rstrip(os.sep).count(os.sep) - base_depth
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and depth + 1 < max_depth)
        out += [os.path.join(dirpath, f) for f in filenames if audio_io.is_audio_name(f) and not f.startswith(".")]
    return sorted(out)


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # libsndfile subtypes that store floating-point samples


def _header(path: str) -> tuple[float | None, str | None]:
    """(duration_s, None) from the header, or (None, reason) when unusable.

    Only files that store floating-point samples are decoded: they are the ones that
    can hold NaN or infinite samples, which would otherwise surface only when training
    renders the clip. Integer formats (nearly every file) are never decoded here.
    """
    plain = wavfile.header_info(path)
    if plain is not None:
        rate, _, frames, floating = plain
    else:
        try:
            info = sf.info(path)
        except Exception as exc:  # soundfile raises several types for bad files
            reason = " ".join(str(exc).split()).rsplit(":", 1)[-1].strip() or type(exc).__name__
            return None, f"not a readable audio file ({reason})"
        rate, frames, floating = info.samplerate, info.frames, info.subtype in FLOAT_SUBTYPES
    if frames <= 0 or rate <= 0:
        return None, "no audio samples"
    if floating and frames / rate <= own.LONG_RECORDING_S:  # longer files are decoded anyway, to be cut
        try:
            audio_io.load(path)
        except AudioError as exc:
            return None, exc.reason()
    return frames / rate, None


def _scan_word_folder(
    folder: Path, word: str, label: str, result: ScanResult, files: list[str], advance=lambda n: None
) -> list[Clip]:
    """Clips of one word folder's ``files``; ``advance(1)`` after each file (long recordings take a while)."""
    if not files:
        result.rejected.append(Rejected(str(folder), "empty word folder (no audio files)", label))
        result.warn(f"{folder}: empty word folder, skipped")
        return []
    clips = []
    for path in files:
        advance(1)
        duration, problem = _header(path)
        if problem is None and duration < MIN_CLIP_S:
            problem = f"too short ({duration * 1000:.0f} ms)"
        if problem:
            result.rejected.append(Rejected(path, problem, label))
            continue
        name = os.path.basename(path)
        if NOHASH in name and not name.startswith(NOHASH):
            speaker = name.split(NOHASH, 1)[0]  # the common case, without pathlib
        else:
            speaker = speaker_from_path(Path(path), folder)
        if duration <= own.LONG_RECORDING_S:
            clips.append(Clip(path, word, speaker, label, 0.0, duration))
            continue
        try:
            windows = own.cut_long_recording(path)
        except AudioError as exc:
            result.rejected.append(Rejected(path, exc.reason(), label))
            continue
        if not windows:
            result.rejected.append(Rejected(path, f"no utterance found in a {duration:.1f} s recording", label))
            continue
        clips += [Clip(path, word, speaker, label, off, dur, cut=True) for off, dur in windows]
    return clips


def _scan_noise(paths: list[str], label: str, result: ScanResult) -> list[NoiseFile]:
    out = []
    for path in paths:
        duration, problem = _header(path)
        if problem:
            result.rejected.append(Rejected(path, f"noise file: {problem}", label))
            continue
        out.append(NoiseFile(path, label, duration))
    return out


def _scan_source(root: Path, label: str, kind: str, result: ScanResult) -> tuple[list[Clip], SourceInfo]:
    info = SourceInfo(str(root), label, kind)
    rejected_before = len(result.rejected)
    clips: list[Clip] = []
    noise: list[NoiseFile] = []
    if kind == "noise":
        noise = _scan_noise(_audio_files(root, max_depth=64), label, result)
    else:
        entries = sorted(root.iterdir())
        if any(e.is_file() and audio_io.is_audio_name(e.name) for e in entries):
            result.warn(
                f"{root} has audio files at its top level, which are ignored: a source holds one folder per word "
                "(<source>/<word>/<file>.wav)"
            )
        # List every folder first (cheap), then read the files under one bar that moves per
        # file: a folder of long recordings to cut would otherwise hold the bar still.
        listed: list[tuple[Path, bool, list[str]]] = []  # (folder, is noise, its audio files)
        for entry in entries:
            if not entry.is_dir():
                continue
            if entry.name in NOISE_FOLDERS:
                listed.append((entry, True, _audio_files(entry, max_depth=64)))
            elif entry.name.startswith((".", "_")):
                continue
            elif entry.name == "splits" and not _audio_files(entry, max_depth=1):
                continue  # Speech Commands split lists, not a word
            else:
                listed.append((entry, False, _audio_files(entry, max_depth=2)))
        with progress.make_progress() as bar:
            task = bar.add_task(f"scanning {root.name}", total=sum(len(files) for _, _, files in listed))
            for entry, is_noise, files in listed:
                if is_noise:
                    noise += _scan_noise(files, label, result)
                    bar.advance(task, len(files))
                else:
                    clips += _scan_word_folder(
                        entry, entry.name.lower(), label, result, files, lambda n: bar.advance(task, n)
                    )
    info.words = dict(sorted(Counter(c.word for c in clips).items()))
    info.noise_files = len(noise)
    info.rejected = len(result.rejected) - rejected_before
    result.noise_files += noise
    return clips, info


def _official_splits(root: Path, clips: list[Clip]) -> tuple[list[str], str] | None:
    found = speech_commands.find_split_lists(root)
    if found is None:
        return None
    folder, where = found
    membership = speech_commands.read_split_lists(folder)
    prefix = len(str(root).rstrip(os.sep)) + 1
    splits = []
    for c in clips:
        relative = c.path[prefix:].replace(os.sep, "/")
        splits.append(membership.get(relative, "train"))
    return splits, where


def _usable(clips: list[Clip], splits: list[str]) -> tuple[bool, str]:
    counts = Counter(splits)
    if any(counts[s] == 0 for s in SPLITS):
        empty = [s for s in SPLITS if counts[s] == 0]
        return False, f"leave {'/'.join(empty)} empty"
    too_small = counts["validation"] < MIN_OFFICIAL_SHARE * len(splits) or counts["test"] < MIN_OFFICIAL_SHARE * len(splits)
    if counts["train"] < max(counts["validation"], counts["test"]) or too_small:
        return False, (
            f"put {counts['test']} clips in test, {counts['validation']} in validation "
            f"and {counts['train']} in train"
        )
    owner: dict[str, str] = {}
    for c, s in zip(clips, splits):
        if owner.setdefault(c.speaker, s) != s:
            return False, f"put speaker {c.speaker} in more than one split"
    return True, ""


def scan(paths, split_by: str = "auto", noise_dirs=()) -> ScanResult:
    """Scan source folders (and extra noise folders) and assign every clip a split."""
    if split_by not in SPLIT_METHODS:
        raise DataError(f"unknown split method {split_by!r}", hint=f"use one of {', '.join(SPLIT_METHODS)}")
    result = ScanResult()
    roots = [(Path(p), None) for p in paths] + [(Path(p), "noise") for p in noise_dirs]
    if not paths:
        raise DataError("no source folder given", hint="pass --source DIR (Speech Commands, synth or own recordings)")
    per_source: list[tuple[Path, list[Clip], SourceInfo]] = []
    used_labels: set[str] = set()
    for root, forced_kind in roots:
        if not root.exists():
            raise DataError(f"source {root} does not exist")
        if not root.is_dir():
            raise DataError(f"source {root} is not a folder")
        root = root.resolve()
        kind = forced_kind or detect_kind(root)
        label = root.name
        n = 2
        while label in used_labels:
            label, n = f"{root.name}#{n}", n + 1
        used_labels.add(label)
        clips, info = _scan_source(root, label, kind, result)
        if kind != "noise" and not clips:
            result.warn(f"{root}: no usable clips found (expected <word>/<file>.wav folders)")
        result.sources.append(info)
        per_source.append((root, clips, info))

    # Official lists first: they fix their speakers' splits, hashing fills in the rest.
    fixed: dict[str, str] = {}
    assigned: list[tuple[list[Clip], list[str] | None]] = []
    any_lists = False
    for root, clips, info in per_source:
        splits = None
        if info.kind != "noise" and split_by != "speaker-hash":
            official = _official_splits(root, clips)
            if official is not None:
                any_lists = True
                candidate, where = official
                ok, why = _usable(clips, candidate)
                if ok or split_by == "official":
                    splits = candidate
                    info.split_method = f"official lists ({where})"
                    if not ok:
                        result.warn(f"{info.label}: the official split lists {why}; used anyway (--split-by official)")
                else:
                    result.warn(
                        f"{info.label}: the official split lists ({where}) {why}; "
                        "splitting by a hash of the speaker id instead"
                    )
        if splits is not None:
            for c, s in zip(clips, splits):
                fixed.setdefault(c.speaker, s)
        assigned.append((clips, splits))
    if split_by == "official" and not any_lists:
        raise DataError(
            "--split-by official: no source has validation_list.txt / testing_list.txt",
            hint="use --split-by auto or speaker-hash",
        )

    speaker_counts: Counter[str] = Counter()
    for clips, splits in assigned:
        if splits is None:
            speaker_counts.update(c.speaker for c in clips if c.speaker not in fixed)
    hashed = hash_splits(dict(speaker_counts))
    for (root, clips, info), (_, splits) in zip(per_source, assigned):
        if info.kind == "noise":
            continue
        if splits is None:
            info.split_method = info.split_method or "speaker-hash"
            splits = [fixed.get(c.speaker) or hashed[c.speaker] for c in clips]
        result.clips += [replace(c, split=s) for c, s in zip(clips, splits)]

    _check_speakers(result)
    return result


def _check_speakers(result: ScanResult) -> None:
    speakers_by_word: dict[str, set[str]] = defaultdict(set)
    for c in result.clips:
        speakers_by_word[c.word].add(c.speaker)
    for word, speakers in sorted(speakers_by_word.items()):
        if len(speakers) == 1:
            result.warn(f"word '{word}' has one speaker only ({next(iter(speakers))}): all its clips land in one split")
    split_of: dict[str, set[str]] = defaultdict(set)
    for c in result.clips:
        split_of[c.speaker].add(c.split)
    mixed = sorted(s for s, splits in split_of.items() if len(splits) > 1)
    if mixed:
        result.warn(f"{len(mixed)} speakers appear in more than one split (from the official lists), e.g. {mixed[0]}")
    if result.clips:
        present = Counter(c.split for c in result.clips)
        for split in SPLITS:
            if present[split] == 0:
                result.warn(
                    f"the {split} split is empty: there are too few speakers "
                    f"({len(split_of)}) to give every split its own"
                )


def scan_sources(paths, split_by: str = "auto", noise_dirs=()) -> tuple[list[Clip], list[NoiseFile], list[Rejected]]:
    """Clips (each with its split), noise files and rejected files of ``paths``."""
    result = scan(paths, split_by, noise_dirs)
    return result.clips, result.noise_files, result.rejected
