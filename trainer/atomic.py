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
    """The process umask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_if_created(path: Path, folder: bool = False) -> None:
    """Give a ``tempfile.mkstemp``/``mkdtemp`` result (always 0600/0700) the mode a
    plain ``open``/``mkdir`` would have given it, so outputs are readable by whoever
    the user's umask allows, like any other file they create."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
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
