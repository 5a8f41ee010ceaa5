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


def test_out_that_is_or_holds_a_source_is_refused(tmp_path, capsys):
    src = make_word_folder(tmp_path / "data" / "src", {"go": 1, "up": 1}, SPEAKERS)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out in (src, tmp_path / "data", src / ".." / "src"):
        rc = main(["data", "curate", "--keywords", "go", "--source", str(src), "--out", str(out), "--overwrite"])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 1 and "would delete your audio" in line
    noise = tmp_path / "noise"
    write_audio(noise / "fan.wav", np.zeros(16000, np.float32))
    rc = main(["data", "curate", "--keywords", "go", "--source", str(src), "--noise", str(noise), "--out", str(noise),
               "--overwrite"])
    assert rc == 1 and "input folder" in _one_error_line(capsys.readouterr().err)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before + [
        p.relative_to(tmp_path) for p in (noise, noise / "fan.wav")]


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


def test_fetch_refuses_a_dest_that_holds_the_archive(tmp_path, capsys):
    import tarfile

    box = tmp_path / "box"
    src = make_word_folder(tmp_path / "sc", {"yes": 1}, ["a", "b", "c"])
    box.mkdir()
    archive = box / "sc.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="sc")
    rc = main(["data", "fetch", "speech-commands", "--dest", str(box), "--from-archive", str(archive), "--overwrite"])
    assert rc == 1 and "lies inside --dest" in _one_error_line(capsys.readouterr().err)
    assert archive.is_file() and [p.name for p in box.iterdir()] == ["sc.tar.gz"]


def test_same_source_twice_is_read_once(tmp_path, capsys):
    src = make_word_folder(tmp_path / "src", {"go": 1, "up": 1}, SPEAKERS, noise_seconds=12)
    out = tmp_path / "ds"
    (tmp_path / "link").symlink_to(src)
    rc = main(["data", "curate", "--keywords", "go", "--source", str(src), "--source", str(src) + "/./",
               "--source", str(tmp_path / "link"), "--noise", str(src / "_background_noise_"), "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert f"--source {src} is given twice; it is read once" in err
    assert f"--source {tmp_path / 'link'} is the same folder as {src}; it is read once" in err
    ds = load_curated(out)
    paths = [r.path for r in ds.rows if r.path]
    assert len(paths) == len(set(paths))  # no clip twice
    assert len({(r.path, r.split) for r in ds.noise_regions}) == len(ds.noise_regions) == 3  # hum.wav once


def test_broken_noise_file_is_rejected_before_it_spoils_examples(tmp_path, capsys):
    src = make_word_folder(tmp_path / "src", {"go": 1, "up": 1}, SPEAKERS, noise_seconds=12)
    bad = write_audio(src / "_background_noise_" / "broken.flac",
                      np.random.default_rng(0).normal(0, 0.05, 15 * 16000).astype(np.float32), fmt="FLAC")
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])  # header intact, data cut off
    nan = np.full(16000 * 11, 0.01, np.float32)
    nan[5] = np.nan
    write_audio(src / "_background_noise_" / "nan.wav", nan, subtype="FLOAT")
    for materialize in (False, True):
        out = tmp_path / f"ds{materialize}"
        args = ["data", "curate", "--keywords", "go", "--source", str(src), "--out", str(out), "--noise-prob", "1"]
        assert main(args + (["--materialize"] if materialize else [])) == 0
        err = capsys.readouterr().err
        assert "broken.flac cannot be decoded" in err and "nan.wav cannot be decoded" in err
        ds = load_curated(out)
        used = {r.noise_path.rsplit("/", 1)[-1] for r in ds.rows if r.noise_path}
        assert used == {"hum.wav"}
        report = json.loads((out / "report.json").read_text())
        reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in report["rejected"]}
        assert reasons["broken.flac"].startswith("noise file: not a readable audio file")
        assert reasons["nan.wav"].startswith("noise file: contains NaN")
        assert not any("could not be rendered" in r["reason"] for r in report["rejected"])
        assert ds.meta["sources"][0]["noise_files"] == 1 and ds.meta["sources"][0]["rejected"] == 2


def test_messages_with_brackets_are_text_and_stay_on_one_line(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buffer, width=40, soft_wrap=True, force_terminal=False))
    progress.warn("skipped /data/take[/old].wav and /data/[draft]/a.wav because it is far too short to use")
    assert buffer.getvalue() == (
        "warning: skipped /data/take[/old].wav and /data/[draft]/a.wav because it is far too short to use\n")
    # progress bars are drawn with markup too: a folder named like a tag must not break them
    monkeypatch.setattr(progress, "enabled", lambda: True)
    monkeypatch.setattr(progress, "console", Console(file=io.StringIO(), force_terminal=True))
    assert list(progress.track([1, 2], "scanning [/x]")) == [1, 2]


def test_the_real_console_does_not_wrap_long_lines():
    assert progress.console.soft_wrap


@pytest.mark.parametrize("command", ["", "fetch", "record", "synth", "curate", "scan"])
def test_every_data_command_help_has_an_example(command, capsys):
    args = ["data", *([command] if command else []), "--help"]
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Example: kws-kit data " + (command or "") in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1"], "--seed -1: must not be negative"),
        (["--unknown-share", "inf"], "must be finite and not negative"),
        (["--silence-share", "nan"], "must be finite and not negative"),
        (["--noise", "/nonexistent/noise"], "--noise /nonexistent/noise does not exist"),
        (["--noise", __file__], "is not a folder (give a folder of background-noise recordings)"),
    ],
)
def test_bad_numbers_are_one_line_errors_not_internal_errors(tmp_path, capsys, args, message):
    src = make_word_folder(tmp_path / "src", {"go": 1, "up": 1}, SPEAKERS, noise_seconds=None)
    rc = main(["data", "curate", "--keywords", "go", "--source", str(src), "--out", str(tmp_path / "ds"), *args])
    assert rc == 1 and message in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "ds").exists()


def test_output_where_none_can_be_made_is_a_one_line_error(tmp_path, capsys):
    src = make_word_folder(tmp_path / "src", {"go": 1, "up": 1}, SPEAKERS, noise_seconds=None)
    (tmp_path / "file").write_text("a file, not a folder")
    rc = main(["data", "curate", "--keywords", "go", "--source", str(src), "--out", str(tmp_path / "file" / "ds")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 1 and line.endswith(f"cannot create output folder {tmp_path / 'file' / 'ds'}: {tmp_path / 'file'} is a file, not a folder")
    with pytest.raises(atomic.KwsError, match="cannot create file"):
        atomic.write_text(tmp_path / "file" / "x.txt", "x")
    # whatever else the file system refuses is still one line, not an "internal error"
    rc = main(["data", "synth", "--words", "go", "--count", "1", "--dest", str(tmp_path / "file" / "synth"), "--voices", "en"])
    err = capsys.readouterr().err
    assert rc == 1 and "Not a directory" in _one_error_line(err) and "internal error" not in err


def test_ctrl_c_says_interrupted_and_exits_130(tmp_path, monkeypatch, capsys):
    """Typer turns KeyboardInterrupt into a silent exit 130; the CLI says what happened."""
    from kws_kit.data import scan as scan_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scan_module, "scan", interrupted)
    (tmp_path / "src" / "go").mkdir(parents=True)
    assert main(["data", "scan", "--source", str(tmp_path / "src")]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
