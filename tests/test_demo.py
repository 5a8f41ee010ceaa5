"""The README's main job, shrunk: `kws-kit demo` runs every stage on synthetic speech."""

import json

import pytest

from kws_kit.cli import main

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KWS_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--clips-per-word", "24", "--epochs", "2", "--stream-minutes", "1", "--model", "tiny_conv"]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["keywords"] == ["go", "stop"]
    assert 0.0 <= summary["int8_accuracy"] <= 1.0
    assert summary["tflite_bytes"] == (out / "bundle" / "model.tflite").stat().st_size
    for path in ("synth/synth.json", "curated/report.md", "run/curves.png", "bundle/MODEL_CARD.md", "eval/det.png"):
        assert (out / path).is_file(), path
    # Re-running reuses the synthetic speech and replaces only the demo's own outputs.
    synth_files = sorted(p.name for p in (out / "synth" / "go").iterdir())
    assert main(args) == 0
    assert sorted(p.name for p in (out / "synth" / "go").iterdir()) == synth_files


def test_demo_refuses_a_folder_that_is_not_its_own(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    assert main(["demo", "--out", str(tmp_path / "mine")]) == 1
    assert "not a kws-kit demo folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
