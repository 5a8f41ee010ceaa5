"""Curation on generated audio: classes, shares, noise regions, determinism, outputs, errors, rendering."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest
import soundfile as sf

from kws_kit.cli import main
from kws_kit.data.curate import CurateOptions, curate, load_curated, noise_regions, render, render_many
from kws_kit.data.common import NoiseFile
from kws_kit.data.manifest import ManifestRow
from kws_kit.data.mix import mix_batch
from kws_kit.errors import DataError

from conftest import make_word_folder, tone_word, write_audio

WORDS = {"go": 2, "stop": 2, "up": 1, "down": 1, "left": 1, "right": 1}
SPEAKERS = [f"spk{i:02d}" for i in range(24)]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One generated source shared by the tests of this module (they only read it)."""
    return make_word_folder(tmp_path_factory.mktemp("curate") / "src", WORDS, SPEAKERS, noise_seconds=20.0)


def _curate(source, out, **kw):
    return curate(CurateOptions(keywords=kw.pop("keywords", ["go", "stop"]), sources=[str(source)], out=str(out), **kw))


def _one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_curate_outputs_classes_shares_and_speaker_disjoint(source, tmp_path):
    out = _curate(source, tmp_path / "ds")
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "manifest.csv", "report.json", "report.md"]
    ds = load_curated(out)
    assert ds.labels == ["_silence_", "_unknown_", "go", "stop"] and ds.keywords == ["go", "stop"]
    counts = ds.meta["counts"]
    for split in ("train", "validation", "test"):
        rows = ds.rows_for(split)
        assert rows, split
        c = Counter(r.label for r in rows)
        average = (c["go"] + c["stop"]) / 2
        assert abs(c["_unknown_"] - average) <= 1 and abs(c["_silence_"] - average) <= 1
        assert counts[split] == {label: c[label] for label in ds.labels}
        # unknown words sampled evenly: counts differ by at most one between words
        per_word = Counter(r.word for r in rows if r.label == "_unknown_")
        assert max(per_word.values()) - min(per_word.values()) <= 1
    owner = defaultdict(set)
    for r in ds.rows:
        if r.speaker:
            owner[r.speaker].add(r.split)
    assert owner and all(len(s) == 1 for s in owner.values())
    assert ds.label_ids(ds.rows[:3]).tolist() == [ds.labels.index(r.label) for r in ds.rows[:3]]
    report = json.loads((out / "report.json").read_text())
    assert report["speakers_in_several_splits"] == []
    assert "| _silence_ |" in (out / "report.md").read_text()


def test_noise_is_split_in_time_and_rows_stay_inside_their_region(source, tmp_path):
    ds = load_curated(_curate(source, tmp_path / "ds", noise_prob=1.0))
    regions = {(r.path, r.split): (r.start_s, r.end_s) for r in ds.noise_regions}
    hum = [r for r in ds.noise_regions if r.path.endswith("hum.wav")]
    assert [(r.split, r.start_s, r.end_s) for r in hum] == [("train", 0.0, 14.0), ("validation", 14.0, 16.0), ("test", 16.0, 20.0)]
    speech = [r for r in ds.rows if r.label != "_silence_"]
    assert all(r.snr_db is not None and 0 <= r.snr_db <= 20 for r in speech)
    for r in ds.rows:
        start, end = regions[(r.noise_path, r.split)]
        assert start <= r.noise_offset_s and r.noise_offset_s + 1.0 <= end + 1e-9


def test_short_noise_files_are_assigned_whole():
    files = [NoiseFile(f"/n/_silence_/{i}.wav", "src", 1.0) for i in range(30)] + [NoiseFile("/n/long.wav", "src", 60.0)]
    regions = noise_regions(files)
    short = [r for r in regions if "_silence_" in r.path]
    assert len(short) == 30 and all(r.start_s == 0 and r.end_s == 1.0 for r in short)
    assert {r.split for r in short} == {"train", "validation", "test"}
    assert [(r.start_s, r.end_s) for r in regions if r.path == "/n/long.wav"] == [(0, 42.0), (42.0, 48.0), (48.0, 60.0)]


def test_same_inputs_and_seed_give_identical_outputs(source, tmp_path):
    a = _curate(source, tmp_path / "a", seed=3)
    b = _curate(source, tmp_path / "b", seed=3)
    c = _curate(source, tmp_path / "c", seed=4)
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    assert (a / "dataset.json").read_bytes() == (b / "dataset.json").read_bytes()
    assert (a / "manifest.csv").read_bytes() != (c / "manifest.csv").read_bytes()


def test_existing_output_needs_overwrite_and_is_replaced_only_when_complete(source, tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["data", "curate", "--keywords", "go,stop", "--source", str(source), "--out", str(out)]
    assert main(args) == 1
    assert "already exists" in _one_error_line(capsys.readouterr().err)
    assert (out / "keep.txt").read_text() == "mine"
    # a failing run with --overwrite leaves the old folder alone
    assert main(["data", "curate", "--keywords", "go,nope", "--source", str(source), "--out", str(out), "--overwrite"]) == 1
    assert (out / "keep.txt").exists()
    assert main(args + ["--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds")]  # no temp folders left


def test_missing_keyword_lists_available_words(source, tmp_path, capsys):
    rc = main(["data", "curate", "--keywords", "go,banana", "--source", str(source), "--out", str(tmp_path / "x")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 1 and "banana" in line and "available words: down, go, left, right, stop, up" in line
    with pytest.raises(DataError, match="given twice"):
        _curate(source, tmp_path / "y", keywords=["go", "Go"])
    rc = main(["data", "curate", "--keywords", "go", "--source", str(source), "--out", str(tmp_path / "z"),
               "--snr-db", "abc"])
    assert rc == 1 and "--snr-db" in _one_error_line(capsys.readouterr().err)


def test_materialized_wavs_equal_render_and_render_many(source, tmp_path):
    out = _curate(source, tmp_path / "ds", materialize=True, keywords=["go"])
    ds = load_curated(out)
    assert all(r.wav == f"wav/{r.split}/{r.label}/{r.id}.wav" for r in ds.rows)
    # the rows that were rendered are exactly the rows read back from the CSV
    from kws_kit.data.curate import build_rows, noise_regions as regions_of
    from kws_kit.data.scan import scan

    opts = CurateOptions(keywords=["go"], sources=[str(source)], out="", materialize=True)
    scanned = scan(opts.sources)
    planned = build_rows(opts, scanned, regions_of(scanned.noise_files))
    assert planned == ds.rows and all(r == r.normalised() for r in planned)
    rows = ds.rows
    batch = render_many(rows, workers=1)
    assert batch.shape == (len(rows), 16000) and batch.dtype == np.float32
    for row, x in zip(rows, batch):
        data, rate = sf.read(str(out / row.wav), dtype="float32")
        info = sf.info(str(out / row.wav))
        assert rate == 16000 and info.subtype == "PCM_16" and info.channels == 1
        assert np.array_equal(data, x)
    assert np.array_equal(render(rows[5]), batch[5])
    silence = [r for r, x in zip(rows, batch) if r.label == "_silence_"]
    assert silence and all(r.path == "" and r.noise_path for r in silence)


@pytest.mark.parametrize("tensorflow_loaded", [False, True])
def test_render_many_with_worker_processes_matches_serial(source, tmp_path, monkeypatch, tensorflow_loaded):
    import sys
    import types

    from kws_kit.data import mix

    if tensorflow_loaded:  # the pool must then use "spawn", never fork TensorFlow's threads
        monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    else:  # other tests in this process may have imported TensorFlow already
        monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert mix._pool_context().get_start_method() == ("spawn" if tensorflow_loaded else "fork")
    ds = load_curated(_curate(source, tmp_path / "ds", keywords=["go", "stop", "up"]))
    rows = ds.rows
    assert len(rows) >= mix.SERIAL_BELOW  # enough for the process pool path
    assert np.array_equal(render_many(rows, workers=2), render_many(rows, workers=1))


def test_mix_hits_the_requested_snr_and_gain():
    t = np.arange(16000) / 16000
    speech = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    noise = np.random.default_rng(0).normal(0, 0.1, (1, 16000)).astype(np.float32)
    row = ManifestRow("x", "train", "go", "go", "s", "p", "/x.wav", 0, 1, "/n.wav", 0, 10.0, -6.0, 0, "")
    mixed = mix_batch([row], speech.copy(), noise.copy()).astype(np.float64) / 32768
    clean = speech[0] * 10 ** (-6 / 20)
    added = mixed[0] - clean
    snr = 10 * np.log10(np.mean(clean**2) / np.mean(added**2))
    assert abs(snr - 10.0) < 0.05
    silence = ManifestRow("y", "train", "_silence_", "", "s", "", "", 0, 0, "/n.wav", 0, None, -20.0, 0, "")
    quiet = mix_batch([silence], np.zeros_like(speech), noise.copy()).astype(np.float64) / 32768
    assert abs(np.std(quiet) - 0.1 * 10 ** (-20 / 20)) < 1e-3


def test_shift_and_fit_to_one_second(tmp_path):
    x = np.zeros(8000, dtype=np.float32)
    x[4000] = 0.5  # an impulse in a half-second clip, padded 4000 each side
    path = write_audio(tmp_path / "half.wav", x)
    row = ManifestRow("x", "train", "go", "go", "s", "p", str(path), 0, 0.5, "", 0, None, 0.0, 160, "")
    y = render(row)
    assert y.shape == (16000,) and int(np.argmax(y)) == 4000 + 4000 + 160
    long = np.zeros(24000, dtype=np.float32)
    long[12000] = 0.5
    row = ManifestRow("x", "train", "go", "go", "s", "p", str(write_audio(tmp_path / "long.wav", long)), 0, 1.5, "", 0,
                      None, 0.0, -100, "")
    assert int(np.argmax(render(row))) == 8000 - 100  # centre-cropped then shifted earlier


def test_max_per_class_and_no_noise(tmp_path, word_folder):
    src = word_folder(words=WORDS, speakers=SPEAKERS, noise_seconds=None)
    out = _curate(src, tmp_path / "ds", max_per_class=10)
    ds = load_curated(out)
    per_class = Counter(r.label for r in ds.rows)
    assert per_class["go"] <= 12 and per_class["stop"] <= 12  # 10, +rounding per split
    assert all(r.noise_path == "" and r.snr_db is None for r in ds.rows)
    report = json.loads((out / "report.json").read_text())
    assert any("no background noise found" in w for w in report["warnings"])
    silence = [r for r in ds.rows if r.label == "_silence_"]
    assert silence and not render_many(silence, workers=1).any()  # digital silence


def test_rejected_files_and_odd_formats_in_report(tmp_path, word_folder):
    src = word_folder(words={"go": 1, "cat": 1}, speakers=[f"s{i}" for i in range(10)])
    (src / "go" / "bad_nohash_0.wav").write_text("not audio")
    write_audio(src / "go" / "wide_nohash_0.wav", np.stack([tone_word("go")] * 2, axis=1), sr=44100, subtype="PCM_24")
    (src / "empty").mkdir()
    out = _curate(src, tmp_path / "ds", keywords=["go"], materialize=True)
    report = json.loads((out / "report.json").read_text())
    rejected = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in report["rejected"]}
    assert rejected["bad_nohash_0.wav"].startswith("not a readable audio file")
    assert rejected["empty"].startswith("empty word folder")
    md = (out / "report.md").read_text()
    assert "bad_nohash_0.wav" in md and "empty word folder" in md
    rows = load_curated(out).rows
    wide = [r for r in rows if r.speaker == "wide"]
    assert wide and sf.info(str(out / wide[0].wav)).samplerate == 16000


def test_load_curated_rejects_other_folders(tmp_path):
    with pytest.raises(DataError, match="not a curated dataset"):
        load_curated(tmp_path)


def test_class_shares_and_mixing_ranges_from_the_command_line(source, tmp_path):
    out = tmp_path / "ds"
    assert main(["data", "curate", "--keywords", "go,stop", "--source", str(source), "--out", str(out),
                 "--unknown-share", "2", "--silence-share", "0.5", "--snr-db", "5,10", "--gain-db", "-3,-1",
                 "--noise-prob", "1", "--split-by", "speaker-hash", "--seed", "9"]) == 0
    ds = load_curated(out)
    assert (ds.meta["unknown_share"], ds.meta["silence_share"], ds.meta["snr_db"], ds.meta["gain_db"]) == (
        2.0, 0.5, [5.0, 10.0], [-3.0, -1.0])
    for split in ("train", "validation", "test"):
        c = Counter(r.label for r in ds.rows_for(split))
        average = (c["go"] + c["stop"]) / 2
        assert abs(c["_unknown_"] - 2 * average) <= 1 and abs(c["_silence_"] - 0.5 * average) <= 1, split
    speech = [r for r in ds.rows if r.label != "_silence_"]
    assert all(5 <= r.snr_db <= 10 and -3 <= r.gain_db <= -1 and abs(r.shift_samples) <= 1600 for r in speech)
    assert all(-70 <= r.gain_db <= 0 and r.snr_db is None for r in ds.rows if r.label == "_silence_")
    assert "split: speaker-hash" in (out / "report.md").read_text()

    none = load_curated(_curate(source, tmp_path / "none", unknown_share=0, silence_share=0))
    assert {r.label for r in none.rows} == {"go", "stop"}
