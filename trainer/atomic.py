"""Write outputs so that a crash or an error never leaves half a file behind.

Everything is written to a temporary sibling and renamed into place; renames
within one folder are atomic on POSIX and Windows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import KwsError


def _umask() -> int:
    """The process umask: read from /proc on Linux, since os.umask can only be read by
    setting it, which would briefly change it under any other thread creating files."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_if_created(path: Path, folder: bool = False) -> None:
    """Give a ``tempfile.mkstemp``/``mkdtemp`` result (always 0600/0700) the mode a
    plain ``open``/``mkdir`` would have given it, so outputs are readable by whoever
    the user's umask allows, like any other file they create."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def _make_room(path: Path, what: str) -> None:
    """Create ``path``'s parent folders, or say in one line why that is impossible."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((a for a in path.parents if a.exists()), None)
        why = f"{blocker} is a file, not a folder" if blocker and not blocker.is_dir() else exc.strerror or str(exc)
        raise KwsError(f"cannot create {what} {path}: {why}") from exc


def _temp(make, path: Path, what: str, **kwargs):
    try:
        return make(dir=path.parent, **kwargs)
    except OSError as exc:  # a read-only or special folder (/proc), no space left...
        raise KwsError(f"cannot create {what} {path}: {exc.strerror or exc} (in {path.parent})") from exc


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    _make_room(path, "file")
    fd, tmp = _temp(tempfile.mkstemp, path, "file", prefix=f".{path.name}.", suffix=".tmp")
    try:
        _as_if_created(Path(tmp))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def output_file(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place on success.

    For libraries that insist on writing to a file name themselves (matplotlib,
    soundfile, Keras). ``suffix`` keeps the extension those libraries look at.
    """
    path = Path(path)
    _make_room(path, "file")
    fd, tmp = _temp(tempfile.mkstemp, path, "file", prefix=f".{path.stem}.", suffix=suffix or path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        _as_if_created(tmp_path)
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output folder") -> Iterator[Path]:
    """Build a folder under a temporary name and move it to ``path`` when done.

    If ``path`` exists and ``overwrite`` is false, raise before doing any work.
    With ``overwrite``, the old folder is replaced only after the new one is
    complete, so a failed run leaves the previous result untouched.
    """
    shown = path
    path = Path(os.path.abspath(path))  # "." or "dir/.." cannot be renamed; their absolute names can
    if path.exists() and not overwrite:
        raise KwsError(f"{what} {shown} already exists", hint="choose another path or pass --overwrite")
    if path.exists() and not path.is_dir():
        raise KwsError(f"{what} {shown} exists and is not a folder")
    if path.exists() and Path.cwd().resolve().is_relative_to(path.resolve()):
        raise KwsError(f"{what} {shown} holds the current folder and cannot be replaced", hint="choose another path")
    _make_room(path, what)
    tmp = Path(_temp(tempfile.mkdtemp, path, what, prefix=f".{path.name}.", suffix=".partial"))
    try:
        _as_if_created(tmp, folder=True)
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
