"""Integration on the real Speech Commands recordings in ../shared (skipped where absent)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import soundfile as sf

from kws_kit.cli import main
from kws_kit.data.curate import load_curated, render
from kws_kit.data.scan import scan


def test_scan_falls_back_from_the_test_heavy_official_lists(shared_speech_commands):
    result = scan([shared_speech_commands], "auto")
    assert result.sources[0].kind == "speech_commands"
    assert result.sources[0].split_method == "speaker-hash"
    assert any("official split lists (splits/v0.02)" in w for w in result.warnings)
    counts = Counter(c.split for c in result.clips)
    assert counts["train"] > counts["validation"] > 0 and counts["train"] > counts["test"] > 0
    assert len(result.clips) == sum(1 for p in shared_speech_commands.glob("*/*.wav")
                                    if not p.parent.name.startswith("_"))
    assert result.rejected == []
    assert len(result.noise_files) == len(list(shared_speech_commands.glob("_background_noise_/*.wav"))) + len(
        list(shared_speech_commands.glob("_silence_/*.wav")))


def test_curate_yes_no_is_speaker_disjoint_balanced_and_deterministic(shared_speech_commands, tmp_path, capsys):
    args = ["data", "curate", "--keywords", "yes,no", "--source", str(shared_speech_commands), "--seed", "7"]
    assert main(args + ["--out", str(tmp_path / "a"), "--materialize"]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    manifest_a = (tmp_path / "a" / "manifest.csv").read_text()
    manifest_b = (tmp_path / "b" / "manifest.csv").read_text()
    # identical apart from the wav column, which only a materialised dataset fills in
    strip = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731
    assert strip(manifest_a) == strip(manifest_b)

    ds = load_curated(tmp_path / "a")
    assert ds.labels == ["_silence_", "_unknown_", "yes", "no"]
    owner = defaultdict(set)
    for r in ds.rows:
        if r.speaker:
            owner[r.speaker].add(r.split)
    assert all(len(s) == 1 for s in owner.values())
    total_yes_no = 0
    for split in ("train", "validation", "test"):
        c = Counter(r.label for r in ds.rows_for(split))
        assert c["yes"] > 0 and c["no"] > 0, split
        average = (c["yes"] + c["no"]) / 2
        assert abs(c["_unknown_"] - average) <= 1 and abs(c["_silence_"] - average) <= 1
        total_yes_no += c["yes"] + c["no"]
        unknown_words = Counter(r.word for r in ds.rows_for(split) if r.label == "_unknown_")
        assert "yes" not in unknown_words and "no" not in unknown_words
    assert total_yes_no == sum(1 for _ in shared_speech_commands.glob("yes/*.wav")) + sum(
        1 for _ in shared_speech_commands.glob("no/*.wav"))
    train = Counter(r.label for r in ds.rows_for("train"))
    assert train["yes"] > 0.6 * sum(1 for _ in shared_speech_commands.glob("yes/*.wav"))

    # test noise is never heard in training: regions of one file do not overlap across splits
    by_file = defaultdict(list)
    for region in ds.noise_regions:
        by_file[region.path].append((region.start_s, region.end_s, region.split))
    for spans in by_file.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["speakers_in_several_splits"] == []
    assert report["speakers"]["train"] > report["speakers"]["test"] > 5

    for row in ds.rows[::97]:
        data, _ = sf.read(str(tmp_path / "a" / row.wav), dtype="float32")
        assert np.array_equal(data, render(row))
