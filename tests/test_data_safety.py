"""The data commands as a user meets them: nothing of the user's is lost, outputs are readable,
bad noise is rejected, messages stay one line, every command's --help teaches with an example."""

from __future__ import annotations

import io
import json
import os
import stat

import numpy as np
import pytest
from rich.console import Console

from kws_kit import atomic, progress
from kws_kit.cli import main
from kws_kit.data.curate import CurateOptions, curate, load_curated

from conftest import make_word_folder, write_audio

SPEAKERS = [f"spk{i:02d}" for i in range(12)]


def _one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_get_the_modes_of_ordinary_files(tmp_path, umask_022):
    # mkstemp/mkdtemp create 0600/0700: a dataset nobody else could read
    f = atomic.write_text(tmp_path / "a.txt", "x")
    with atomic.output_file(tmp_path / "b.wav") as tmp:
        tmp.write_bytes(b"y")
    with atomic.output_dir(tmp_path / "out") as tmp:
        (tmp / "c.txt").write_text("z")
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.wav").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    os.umask(0o077)
    assert stat.S_IMODE(atomic.write_text(tmp_path / "d.txt", "x").stat().st_mode) == 0o600


def test_curated_dataset_is_readable_by_others(tmp_path, umask_022):
    src = make_word_folder(tmp_path / "src", {"go": 1, "up": 1}, SPEAKERS)
    out = curate(CurateOptions(keywords=["go"], sources=[str(src)], out=str(tmp_path / "ds"), materialize=True))
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "manifest.csv").stat().st_mode) == 0o644


def test_out_dot_is_a_clear_error_not_a_crash(tmp_path, monkeypatch, capsys):
    src = make_word_folder(tmp_path / "src", {"go": 1, "up": 1}, SPEAKERS)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rc = main(["data", "curate", "--keywords", "go", "--source", str(src), "--out", ".", "--overwrite"])
    assert rc == 1 and "holds the current folder" in _one_error_line(capsys.readouterr().err)
    assert work.is_dir() and not list(tmp_path.glob(".*partial"))
    # a relative --out that names its parent with ".." still works
    assert main(["data", "curate", "--keywords", "go", "--source", str(src), "--out", "../ds/x/.."]) == 0
    assert (tmp_path / "ds" / "manifest.csv").is_file()
