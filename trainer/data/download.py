"""Resumable HTTP downloads and tar extraction that cannot write outside its folder.

Downloads go to ``<file>.part`` and continue from where they stopped (HTTP
Range) after a dropped connection or an interrupted run; the file gets its
final name only once its size (and SHA-256, when known) check out.

Extraction refuses absolute paths, ``..`` components, symbolic and hard links,
devices and FIFOs, and writes into a temporary folder beside the destination
that is renamed into place only when the whole archive was read without error.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from http.client import HTTPException
from pathlib import Path, PurePosixPath

from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from .. import __version__, atomic, progress
from ..errors import KwsError

CHUNK = 1 << 20


def _progress_bar() -> Progress:
    return Progress(
        progress.description_column(),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=progress.console,
        disable=not progress.enabled(),
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    retry_wait_s: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if it exists.

    Raises :class:`KwsError` if the server cannot be reached after ``retries``
    attempts, if the size differs from ``expected_size`` or the server's
    Content-Length, or if the SHA-256 differs from ``expected_sha256`` (the bad
    file is then kept as ``dest.unverified`` for inspection, never used).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hasher = hashlib.sha256()
    hashed = 0  # bytes of ``part`` already fed to ``hasher``
    total: int | None = None
    failures = 0
    with _progress_bar() as bar:
        task = bar.add_task(f"downloading {dest.name}", total=None)
        while True:
            have = part.stat().st_size if part.exists() else 0
            if hashed != have:  # resuming a .part from an earlier run: hash what is there
                hasher, hashed = _hash_file(part), have
            headers = {"User-Agent": f"kws-kit/{__version__}"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and have:
                    full = _total_from_content_range(exc.headers.get("Content-Range", ""))
                    if full == have:  # the .part is already complete
                        total = have
                        break
                    part.unlink()  # our own stale partial file; start again
                    hasher, hashed = hashlib.sha256(), 0
                    continue
                raise KwsError(f"download failed: HTTP {exc.code} {exc.reason} for {url}") from exc
            except ValueError as exc:  # "unknown url type": no scheme, a typo
                raise KwsError(f"cannot download {url!r}: {_one_line(exc)}", hint="give a full http(s):// URL") from exc
            except (urllib.error.URLError, OSError, HTTPException) as exc:
                failures += 1
                if failures > retries:
                    raise KwsError(
                        f"cannot download {url}: {_one_line(getattr(exc, 'reason', exc))}",
                        hint="check the network; run the same command again to resume",
                    ) from exc
                time.sleep(retry_wait_s * failures)
                continue
            with response:
                if response.status == 206:
                    start = _start_from_content_range(response.headers.get("Content-Range", ""))
                    if start != have:
                        raise KwsError(f"download failed: server resumed at byte {start}, expected {have} ({url})")
                    total = _total_from_content_range(response.headers.get("Content-Range", ""))
                    mode = "ab"
                else:  # 200: the server ignored the range request, so start over
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    have, mode = 0, "wb"
                    hasher, hashed = hashlib.sha256(), 0
                if expected_size is not None and total is not None and total != expected_size:
                    raise KwsError(
                        f"download failed: the server offers {total} bytes, expected {expected_size} ({url})",
                        hint="the file on the server changed; pass --sha256 with the new checksum if you trust it",
                    )
                bar.update(task, total=total, completed=have)
                try:
                    with open(part, mode) as f:
                        while True:
                            chunk = response.read(CHUNK)
                            if not chunk:
                                break
                            f.write(chunk)
                            hasher.update(chunk)
                            hashed += len(chunk)
                            bar.advance(task, len(chunk))
                except (ConnectionError, TimeoutError, socket.timeout, HTTPException) as exc:
                    failures += 1
                    if failures > retries:
                        raise KwsError(
                            f"download of {url} keeps breaking off ({_one_line(exc)})",
                            hint="run the same command again to resume",
                        ) from exc
                    time.sleep(retry_wait_s * failures)
                    continue
                except OSError as exc:  # disk full, permission...: retrying will not help
                    raise KwsError(f"cannot write {part}: {_one_line(exc)}") from exc
            size = part.stat().st_size
            if total is not None and size < total:  # connection closed early without an error
                failures += 1
                if failures > retries:
                    raise KwsError(
                        f"download of {url} stopped at {size} of {total} bytes",
                        hint="run the same command again to resume",
                    )
                time.sleep(retry_wait_s * failures)
                continue
            if total is not None and size > total:
                part.unlink()
                raise KwsError(f"download failed: got {size} bytes, the server announced {total} ({url})")
            total = size
            break
    if expected_size is not None and total != expected_size:
        raise KwsError(f"download failed: {dest.name} has {total} bytes, expected {expected_size}")
    if expected_sha256:
        digest = hasher.hexdigest()
        if digest != expected_sha256.lower():
            bad = dest.with_name(dest.name + ".unverified")
            os.replace(part, bad)
            raise KwsError(
                f"checksum mismatch for {dest.name}: sha256 {digest}, expected {expected_sha256.lower()}; "
                f"the file was kept as {bad} and not used",
                hint="run the command again to download afresh",
            )
    os.replace(part, dest)
    return dest


def _hash_file(path: Path, advance=lambda n: None) -> "hashlib._Hash":
    """SHA-256 of a file read in chunks; ``advance(bytes)`` after each one, for a progress bar."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            advance(len(chunk))
    return h


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a file, with a progress bar (the Speech Commands archive takes seconds)."""
    path = Path(path)
    with _progress_bar() as bar:
        task = bar.add_task(f"checking {path.name}", total=path.stat().st_size)
        return _hash_file(path, lambda n: bar.advance(task, n)).hexdigest()


_RANGE = re.compile(r"bytes\s+(\d+|\*)-?(\d*)/(\d+|\*)")


def _start_from_content_range(value: str) -> int | None:
    m = _RANGE.match(value.strip())
    return int(m.group(1)) if m and m.group(1) != "*" else None


def _total_from_content_range(value: str) -> int | None:
    m = _RANGE.match(value.strip())
    return int(m.group(3)) if m and m.group(3) != "*" else None


# --------------------------------------------------------------------------- extraction


def _member_target(member: tarfile.TarInfo, root: Path, archive: Path) -> Path | None:
    """Where ``member`` may be written under ``root``; raise for anything unsafe."""
    name = member.name

    def unsafe(why: str) -> KwsError:
        return KwsError(f"{archive}: refusing unsafe archive member {name!r} ({why}); nothing was extracted")

    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise unsafe("absolute path")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if ".." in parts:
        raise unsafe("'..' in the path")
    if member.issym() or member.islnk():
        raise unsafe("link")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise unsafe("device or FIFO")
    if not (member.isfile() or member.isdir()):
        raise unsafe("unsupported member type")
    if not parts:
        return None
    target = root.joinpath(*parts)
    if os.path.commonpath([os.path.abspath(target), os.path.abspath(root)]) != os.path.abspath(root):
        raise unsafe("outside the destination")
    return target


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Extract a (compressed) tar ``archive`` into the folder ``dest``.

    Reads the archive in one streaming pass, so a truncated or corrupt archive
    fails with a clear error and leaves nothing behind. An archive whose
    content sits in one top-level folder has that folder's content placed
    directly in ``dest``.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise KwsError(f"archive {archive} not found")
    with atomic.output_dir(dest, overwrite=overwrite, what="destination") as tmp:
        staging = tmp / ".extracting"
        staging.mkdir()
        files = 0
        try:
            # Our own handle on the file: its position is how far the compressed stream has been read.
            with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
                with _progress_bar() as bar:
                    task = bar.add_task(f"extracting {archive.name}", total=archive.stat().st_size)
                    for member in tar:
                        target = _member_target(member, staging, archive)
                        if target is None:
                            continue
                        if member.isdir():
                            target.mkdir(parents=True, exist_ok=True)
                        else:
                            target.parent.mkdir(parents=True, exist_ok=True)
                            source = tar.extractfile(member)
                            with open(target, "wb") as out:
                                shutil.copyfileobj(source, out, CHUNK)
                            files += 1
                        bar.update(task, completed=raw.tell())
        except KwsError:
            raise
        except OSError as exc:
            if exc.errno is not None:  # the disk, not the archive: no space left, permissions...
                raise KwsError(f"cannot extract {archive} into {dest}: {exc.strerror}; nothing was extracted") from exc
            raise KwsError(f"{archive}: corrupt or truncated archive ({_one_line(exc)}); nothing was extracted") from exc
        except (tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
            raise KwsError(f"{archive}: corrupt or truncated archive ({_one_line(exc)}); nothing was extracted") from exc
        if files == 0:
            raise KwsError(f"{archive}: the archive contains no files")
        entries = list(staging.iterdir())
        inner = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        for child in inner.iterdir():
            os.replace(child, tmp / child.name)
        shutil.rmtree(staging)
    return Path(dest)
