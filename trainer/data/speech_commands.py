"""Google Speech Commands (Warden 2018, CC BY 4.0): fetching the archive and reading its split lists.

Layout: ``<word>/<speaker>_nohash_<n>.wav`` (16 kHz mono 16-bit, one second),
``_background_noise_/*.wav`` (long noise recordings), and the official split
lists ``validation_list.txt`` / ``testing_list.txt`` (paths relative to the
root; every file in neither list is training data). Some copies keep the lists
under ``splits/v0.0x/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import progress
from ..errors import KwsError
from . import download as dl
from .common import BACKGROUND_NOISE


@dataclass(frozen=True)
class Release:
    url: str
    size: int
    sha256: str


# Sizes and SHA-256 digests as published by torchaudio (speechcommands.py
# _CHECKSUMS) and TensorFlow Datasets (speech_commands checksums); several
# independent projects quote the same values. They were cross-checked between
# those public sources, not by downloading the archives here (no network).
RELEASES = {
    "0.02": Release(
        "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        2428923189,
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    ),
    "0.01": Release(
        "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        1488293908,
        "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
    ),
}

LIST_NAMES = {"validation": "validation_list.txt", "test": "testing_list.txt"}


def find_split_lists(root: Path) -> tuple[Path, str] | None:
    """The folder holding the official lists and a description, or None.

    The root wins over ``splits/v0.0x/``; among versions the newest wins.
    """
    candidates = [(root, "root")]
    splits = root / "splits"
    if splits.is_dir():
        versions = sorted((p for p in splits.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)
        candidates += [(v, f"splits/{v.name}") for v in versions]
    for folder, where in candidates:
        if any((folder / name).is_file() for name in LIST_NAMES.values()):
            return folder, where
    return None


def read_split_lists(folder: Path) -> dict[str, str]:
    """Map ``word/file.wav`` -> "validation" | "test" from the official lists."""
    membership: dict[str, str] = {}
    for split, name in LIST_NAMES.items():
        path = folder / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise KwsError(f"cannot read split list {path}: {exc}") from exc
        for line in text.splitlines():
            entry = line.strip().replace("\\", "/")
            if entry:
                membership[entry.removeprefix("./")] = split
    return membership


def looks_like_speech_commands(root: Path) -> bool:
    return (root / BACKGROUND_NOISE).is_dir() or find_split_lists(root) is not None


def fetch(
    dest: str | os.PathLike,
    *,
    version: str = "0.02",
    url: str | None = None,
    from_archive: str | os.PathLike | None = None,
    sha256: str | None = None,
    keep_archive: bool = False,
    overwrite: bool = False,
) -> Path:
    """Download (or take ``from_archive``) the Speech Commands tarball and extract it to ``dest``.

    The official URL is checked against the known size and SHA-256; a custom
    ``url`` or a local archive is checked only against ``sha256`` when given
    (and always for gzip/tar integrity while extracting).
    """
    dest = Path(dest)
    if version not in RELEASES:
        raise KwsError(f"unknown Speech Commands version {version!r}", hint="use 0.02 or 0.01")
    if dest.exists() and not overwrite:
        raise KwsError(f"destination {dest} already exists", hint="choose another --dest or pass --overwrite")
    release = RELEASES[version]
    if from_archive is not None:
        archive = Path(from_archive)
        if not archive.is_file():
            raise KwsError(f"archive {archive} not found")
        if Path(os.path.realpath(archive)).is_relative_to(os.path.realpath(dest)):
            raise KwsError(
                f"the archive {archive} lies inside --dest {dest}, which --overwrite would delete",
                hint="move the archive out of that folder first",
            )
        if sha256:
            progress.info(f"checking the SHA-256 of {archive.name}")
            digest = dl.sha256_of(archive)
            if digest != sha256.lower():
                raise KwsError(f"checksum mismatch for {archive}: sha256 {digest}, expected {sha256.lower()}")
        downloaded = False
    else:
        official = url is None
        url = url or release.url
        archive = dest.parent / Path(url.split("?", 1)[0]).name
        if not archive.name.endswith((".tar.gz", ".tgz", ".tar")):
            archive = dest.parent / f"speech_commands_v{version}.tar.gz"
        expected_sha = sha256 or (release.sha256 if official else None)
        if archive.exists():
            progress.info(f"using the archive already at {archive}")
            if expected_sha and dl.sha256_of(archive) != expected_sha.lower():
                raise KwsError(
                    f"{archive} exists but its checksum is wrong",
                    hint="move it away and run again to download afresh",
                )
            downloaded = False
        else:
            progress.info(f"downloading Speech Commands v{version} from {url}")
            dl.download(url, archive, expected_size=release.size if official else None, expected_sha256=expected_sha)
            downloaded = True
    dl.safe_extract(archive, dest, overwrite=overwrite)
    if downloaded and not keep_archive:
        archive.unlink()  # our own download; the extracted folder is what the user asked for
    words = [p for p in dest.iterdir() if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "splits"]
    clips = sum(1 for w in words for _ in w.glob("*.wav"))
    noise = len(list((dest / BACKGROUND_NOISE).glob("*.wav"))) if (dest / BACKGROUND_NOISE).is_dir() else 0
    progress.info(f"extracted {clips} clips of {len(words)} words and {noise} noise files into {dest}")
    return dest
