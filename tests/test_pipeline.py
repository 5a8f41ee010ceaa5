"""Train -> export -> eval on a toy corpus, through the CLI, plus the bad inputs of each stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import toy_audio
from kws_kit.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    toy_audio.make_corpus(root / "src", speakers=16, takes=4)
    return root


@pytest.fixture(scope="module", autouse=True)
def _cache(work):
    mp = pytest.MonkeyPatch()
    mp.setenv("KWS_CACHE_DIR", str(work / "cache"))
    mp.setenv("KWS_NO_PROGRESS", "1")
    yield
    mp.undo()


def run_cli(args, capsys):
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture(scope="module")
def curated(work):
    from kws_kit.data.curate import CurateOptions, curate

    return curate(CurateOptions(keywords=["go", "stop"], sources=[str(work / "src")], out=str(work / "curated")))


@pytest.fixture(scope="module")
def run_dir(work, curated):
    from kws_kit.train import TrainConfig, train

    cfg = TrainConfig(data=str(curated), model="tiny_conv", epochs=3, batch_size=32, seed=1)
    train(cfg, work / "run")
    return work / "run"


@pytest.fixture(scope="module")
def bundle(work, run_dir):
    from kws_kit.export import export

    return export(run_dir, work / "bundle", representative=60)


def test_train_writes_a_complete_run(run_dir):
    for name in ("run.json", "frontend.json", "best.keras", "last.keras", "state.json", "history.csv", "curves.png"):
        assert (run_dir / name).is_file(), name
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 3 and state["done"]
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 1 + 3
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_training_is_reproducible(work, curated, run_dir):
    from kws_kit.train import TrainConfig, train

    again = train(TrainConfig(data=str(curated), model="tiny_conv", epochs=3, batch_size=32, seed=1), work / "run2")
    first = json.loads((run_dir / "state.json").read_text())
    assert [h["loss"] for h in again["history"]] == pytest.approx([h["loss"] for h in first["history"]], rel=1e-5)


def test_resume_continues_where_it_stopped(work, curated, capsys):
    out = work / "resume"
    rc, _, err = run_cli(["train", "--data", curated, "--out", out, "--model", "tiny_conv", "--epochs", "1"], capsys)
    assert rc == 0, err
    rc, _, err = run_cli(["train", "--data", curated, "--out", out, "--model", "tiny_conv", "--epochs", "2", "--resume"], capsys)
    assert rc == 0, err
    state = json.loads((out / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]


def test_train_refuses_existing_run_and_unknown_model(work, curated, run_dir, capsys):
    rc, _, err = run_cli(["train", "--data", curated, "--out", run_dir, "--model", "tiny_conv"], capsys)
    assert rc == 1 and "already exists" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["train", "--data", curated, "--out", work / "x", "--model", "resnet9000"], capsys)
    assert rc == 1 and "resnet9000" in err and "tiny_conv" in err and len(err.strip().splitlines()) == 1
    assert not (work / "x" / "best.keras").exists()


def test_train_rejects_one_class_and_empty_data(work, curated, capsys, tmp_path):
    from kws_kit.data.manifest import MANIFEST

    one = tmp_path / "one"
    shutil.copytree(curated, one)
    lines = (one / MANIFEST).read_text().splitlines()
    header, rows = lines[0], lines[1:]
    label_col = header.split(",").index("label")
    keep = [r for r in rows if r.split(",")[label_col] == "go"]
    (one / MANIFEST).write_text("\n".join([header] + keep) + "\n")
    rc, _, err = run_cli(["train", "--data", one, "--out", tmp_path / "r1"], capsys)
    assert rc == 1 and "one class" in err
    rc, _, err = run_cli(["train", "--data", tmp_path / "nothing", "--out", tmp_path / "r2"], capsys)
    assert rc == 1 and "not a curated dataset" in err


def test_train_checks_the_board_budget(work, curated, capsys):
    rc, _, err = run_cli(
        ["train", "--data", curated, "--out", work / "big", "--model", "ds_cnn_m", "--board", "nucleo", "--epochs", "1"], capsys
    )
    assert rc == 1 and "nucleo" in err.lower() and len(err.strip().splitlines()) == 1
    assert not (work / "big" / "best.keras").exists()


def test_export_bundle_is_complete_and_loads(bundle, run_dir):
    from kws_kit.bundle import load_bundle

    b = load_bundle(bundle)
    assert b.labels == ["_silence_", "_unknown_", "go", "stop"]
    assert b.keywords == ["go", "stop"]
    meta = b.metadata
    assert meta["input"]["shape"] == [1, 49, 10, 1]
    assert 0.0 <= meta["accuracy"]["int8"] <= 1.0 and 0.0 <= meta["accuracy"]["float"] <= 1.0
    assert meta["sizes"]["tflite_bytes"] == len((bundle / "model.tflite").read_bytes())
    assert set(meta["ops"]) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                                "MEAN", "RESHAPE", "SOFTMAX", "ADD"}
    card = (bundle / "MODEL_CARD.md").read_text()
    assert f"{meta['accuracy']['int8']:.4f}" in card
    assert json.loads((bundle / "frontend.json").read_text())["version"] >= 1


def test_int8_predictions_agree_with_float(bundle, curated):
    """The int8 bundle must classify like its float twin on most clips."""
    from kws_kit.bundle import load_bundle
    from kws_kit.data.curate import load_curated
    from kws_kit.evaluate import predict_float_tflite, predict_int8
    from kws_kit.train import features_for_rows

    b = load_bundle(bundle)
    rows = load_curated(curated).rows_for("train")[:80]
    x = features_for_rows(rows, b.spec())
    f = predict_float_tflite(b.float_model_path(), x).argmax(1)
    q = predict_int8(b.model_bytes, x, b.input_scale, b.input_zero_point).argmax(1)
    assert np.mean(f == q) >= 0.9


def test_export_refuses_to_overwrite_and_keeps_old_bundle(bundle, run_dir, capsys):
    before = (bundle / "model.tflite").read_bytes()
    rc, _, err = run_cli(["export", run_dir, "--out", bundle], capsys)
    assert rc == 1 and "already exists" in err
    assert (bundle / "model.tflite").read_bytes() == before


def test_export_errors(work, run_dir, capsys, tmp_path):
    rc, _, err = run_cli(["export", tmp_path, "--out", tmp_path / "b"], capsys)
    assert rc == 1 and "not a training run folder" in err
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "best.keras").write_bytes(b"not a keras file")
    rc, _, err = run_cli(["export", broken, "--out", tmp_path / "b2"], capsys)
    assert rc == 1 and "corrupt" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b2").exists()
    rc, _, err = run_cli(["export", run_dir, "--out", tmp_path / "b3", "--representative", "5"], capsys)
    assert rc == 1 and "representative" in err.lower()
    assert not (tmp_path / "b3").exists()


def test_eval_on_curated_split_and_on_a_plain_folder(bundle, curated, work, capsys):
    out = work / "eval"
    rc, _, err = run_cli(["eval", bundle, "--data", curated, "--out", out, "--stream-minutes", "3"], capsys)
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == sum(report["int8"]["per_class"][k]["support"] for k in report["int8"]["per_class"])
    assert {"accuracy", "per_class", "confusion"} <= set(report["int8"])
    assert "float" in report
    stream = report["stream"]
    assert stream["events"] > 0 and stream["hours"] == pytest.approx(3 / 60, rel=0.05)
    assert len(stream["sweep"]) > 5
    for png in ("confusion.png", "det.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # Any folder of <word>/*.wav works too (e.g. a user's own recordings).
    rc, _, err = run_cli(["eval", bundle, "--data", work / "src", "--out", work / "eval2", "--stream-minutes", "0"], capsys)
    assert rc == 0, err
    report2 = json.loads((work / "eval2" / "report.json").read_text())
    assert report2["clips"] == 6 * 16 * 4


def test_eval_rejects_broken_bundles(bundle, curated, capsys, tmp_path):
    missing = tmp_path / "missing"
    shutil.copytree(bundle, missing)
    (missing / "labels.txt").unlink()
    rc, _, err = run_cli(["eval", missing, "--data", curated], capsys)
    assert rc == 1 and "labels.txt" in err
    mismatch = tmp_path / "mismatch"
    shutil.copytree(bundle, mismatch)
    (mismatch / "labels.txt").write_text("a\nb\nc\n")
    rc, _, err = run_cli(["eval", mismatch, "--data", curated], capsys)
    assert rc == 1 and "3 labels" in err
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bundle, corrupt)
    (corrupt / "model.tflite").write_bytes(b"\x00" * 64)
    rc, _, err = run_cli(["eval", corrupt, "--data", curated], capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    meta = json.loads((old / "metadata.json").read_text())
    meta["format"] = 99
    (old / "metadata.json").write_text(json.dumps(meta))
    rc, _, err = run_cli(["eval", old, "--data", curated], capsys)
    assert rc == 1 and "format" in err


def test_speaker_counts_leave_out_silence(bundle, curated, work, capsys):
    from kws_kit.data.curate import load_curated

    rows = load_curated(curated).rows_for("test")
    assert any(not r.speaker for r in rows)  # _silence_ examples have no speaker
    speakers = len({r.speaker for r in rows if r.speaker})
    assert json.loads((bundle / "metadata.json").read_text())["accuracy"]["speakers"] == speakers
    out = work / "eval_speakers"
    rc, _, err = run_cli(["eval", bundle, "--data", curated, "--out", out, "--stream-minutes", "0"], capsys)
    assert rc == 0, err
    assert json.loads((out / "report.json").read_text())["speakers"] == speakers
