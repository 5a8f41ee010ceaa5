"""Scanning sources: formats, bad files, speaker rules, long recordings, speaker-level splits."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from kws_kit.data.common import Clip, hash_splits, speaker_from_path
from kws_kit.data.own import clip_windows, detect_utterances
from kws_kit.data.scan import detect_kind, scan, scan_sources
from kws_kit.errors import DataError

from conftest import tone_word, write_audio


def _splits_by_speaker(clips: list[Clip]) -> dict[str, set[str]]:
    owner = defaultdict(set)
    for c in clips:
        owner[c.speaker].add(c.split)
    return owner


def test_speaker_rules(tmp_path):
    word = tmp_path / "house"
    assert speaker_from_path(word / "a1b2c3_nohash_4.wav", word) == "a1b2c3"
    assert speaker_from_path(word / "maria" / "take7.wav", word) == "maria"
    assert speaker_from_path(word / "alice_03.wav", word) == "alice"
    assert speaker_from_path(word / "bob-take-2.flac", word) == "bob-take"
    assert speaker_from_path(word / "carol 12 .ogg", word) == "carol"
    assert speaker_from_path(word / "0042.wav", word) == "anonymous"


def test_odd_formats_are_converted_not_rejected(tmp_path):
    x = tone_word("go")
    own = tmp_path / "own" / "go"
    write_audio(own / "byte_1.wav", x, subtype="PCM_U8")
    write_audio(own / "deep_1.wav", x, subtype="PCM_24")
    write_audio(own / "float_1.wav", x, subtype="FLOAT")
    write_audio(own / "stereo_1.wav", np.stack([x, x], axis=1))
    import librosa

    write_audio(own / "cd_1.wav", librosa.resample(x, orig_sr=16000, target_sr=44100), sr=44100)
    write_audio(own / "flac_1.flac", x, fmt="FLAC")
    write_audio(own / "ogg_1.ogg", x, subtype="VORBIS", fmt="OGG")
    write_audio(own / "mpeg_1.mp3", x, subtype="MPEG_LAYER_III", fmt="MP3")  # libsndfile >= 1.1 (soundfile >= 0.12)
    clips, noise, rejected = scan_sources([tmp_path / "own"], "speaker-hash")
    assert rejected == [] and noise == []
    assert sorted(c.speaker for c in clips) == ["byte", "cd", "deep", "flac", "float", "mpeg", "ogg", "stereo"]
    assert all(abs(c.duration_s - 1.0) < 1e-3 for c in clips)

    from kws_kit.data.manifest import ManifestRow
    from kws_kit.data.mix import render

    for c in clips:
        row = ManifestRow("id", "train", "go", "go", "own", c.speaker, c.path, c.offset_s, c.duration_s,
                          "", 0.0, None, 0.0, 0, "")
        y = render(row)
        assert y.shape == (16000,) and y.dtype == np.float32
        tolerance = 0.02 if c.speaker in ("byte", "ogg", "mpeg") else 2e-3  # lossy formats
        assert np.max(np.abs(y - x)) < tolerance + 0.01 * (c.speaker == "cd"), c.speaker


def test_bad_files_are_skipped_and_reported(tmp_path):
    src = tmp_path / "src"
    for s in ("a", "b", "c"):
        write_audio(src / "go" / f"{s}_nohash_0.wav", tone_word("go"))
    (src / "go" / "text_nohash_0.wav").write_text("this is not audio")
    (src / "go" / "noise_nohash_0.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    good = (src / "go" / "a_nohash_0.wav").read_bytes()
    (src / "go" / "header_nohash_0.wav").write_bytes(good[:44])
    (src / "go" / "half_nohash_0.wav").write_bytes(good[: len(good) // 2])  # truncated: kept, padded later
    write_audio(src / "go" / "tiny_nohash_0.wav", np.zeros(200, dtype=np.float32))
    (src / "go" / "notes.txt").write_text("ignored: not an audio file name")
    (src / "empty").mkdir(parents=True)
    result = scan([src])
    reasons = {Path(r.path).name: r.reason for r in result.rejected}
    assert reasons["text_nohash_0.wav"].startswith("not a readable audio file")
    assert reasons["noise_nohash_0.wav"].startswith("not a readable audio file")
    assert reasons["header_nohash_0.wav"] == "no audio samples"
    assert reasons["tiny_nohash_0.wav"].startswith("too short")
    assert reasons["empty"].startswith("empty word folder")
    kept = {c.speaker: c for c in result.clips}
    assert set(kept) == {"a", "b", "c", "half"}
    assert 0.45 < kept["half"].duration_s < 0.55
    assert any("empty word folder" in w for w in result.warnings)


def test_long_recording_is_cut_into_one_clip_per_utterance(tmp_path):
    sr = 16000
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.003, 7 * sr).astype(np.float32)
    starts = [0.4, 1.9, 3.1, 4.6, 6.2]
    for i, st in enumerate(starts):
        burst = tone_word(f"w{i}", seconds=0.5, length_s=0.35)
        a = int(st * sr)
        x[a : a + len(burst)] += burst
    src = tmp_path / "own"
    write_audio(src / "yes" / "dana_01.wav", x)
    write_audio(src / "yes" / "silent_1.wav", np.zeros(3 * sr, dtype=np.float32))
    result = scan([src], "speaker-hash")
    assert len(result.clips) == len(starts)
    assert {c.speaker for c in result.clips} == {"dana"}
    assert len({c.split for c in result.clips}) == 1  # cut clips share their speaker's split
    for c, st in zip(sorted(result.clips, key=lambda c: c.offset_s), starts):
        assert c.cut and c.duration_s == 1.0
        assert c.offset_s <= st + 0.1 and st + 0.35 <= c.offset_s + 1.0  # the window holds the burst
    assert [r.reason for r in result.rejected] == ["no utterance found in a 3.0 s recording"]


def test_detect_utterances_merges_close_parts_and_drops_clicks():
    sr = 16000
    x = np.random.default_rng(2).normal(0, 0.002, 3 * sr).astype(np.float32)
    x[8000:12000] += 0.3   # 250 ms
    x[14000:18000] += 0.3  # 125 ms gap -> merged with the first
    x[40000:40400] += 0.3  # 25 ms click -> dropped
    segments = detect_utterances(x)
    assert len(segments) == 1
    start, end = segments[0]
    assert 0.45 < start < 0.52 and 1.1 < end < 1.16
    assert clip_windows(segments, 3.0) == [(round((start + end) / 2 - 0.5, 4), 1.0)]
    assert clip_windows([(0.0, 0.2)], 3.0) == [(0.0, 1.0)]  # kept inside the file
    assert clip_windows([(2.9, 3.0)], 3.0) == [(2.0, 1.0)]


def test_speaker_hash_split_is_speaker_disjoint_and_stable(word_folder):
    src = word_folder(words={"go": 2, "stop": 1, "cat": 1}, speakers=[f"p{i}" for i in range(40)])
    first = scan_sources([src], "speaker-hash")[0]
    again = scan_sources([src], "speaker-hash")[0]
    assert first == again
    owner = _splits_by_speaker(first)
    assert all(len(s) == 1 for s in owner.values())
    assert {c.split for c in first} == {"train", "validation", "test"}
    assert sum(c.split == "train" for c in first) > len(first) / 2


def test_hash_splits_gives_every_split_a_group_when_few():
    for n in range(3, 12):
        groups = {f"voice{i}": 10 for i in range(n)}
        assigned = hash_splits(groups)
        assert set(assigned.values()) == {"train", "validation", "test"}, n
        assert sum(v == "train" for v in assigned.values()) >= max(
            sum(v == "validation" for v in assigned.values()), sum(v == "test" for v in assigned.values())
        )
    assert set(hash_splits({"solo": 5}).values()) <= {"train", "validation", "test"}


def _with_lists(src: Path, validation: list[str], test: list[str], where: str = "") -> None:
    folder = src / where if where else src
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "validation_list.txt").write_text("".join(f"{p}\n" for p in validation))
    (folder / "testing_list.txt").write_text("".join(f"{p}\n" for p in test))


def test_official_lists_used_when_usable(word_folder):
    speakers = [f"s{i}" for i in range(10)]
    src = word_folder(words={"go": 1, "stop": 1}, speakers=speakers)
    _with_lists(src, [f"go/s1_nohash_0.wav", "stop/s1_nohash_0.wav"], ["go/s2_nohash_0.wav", "stop/s2_nohash_0.wav"],
                where="splits/v0.02")
    assert detect_kind(src) == "speech_commands"
    result = scan([src], "auto")
    split = {(c.word, c.speaker): c.split for c in result.clips}
    assert split[("go", "s1")] == "validation" and split[("go", "s2")] == "test" and split[("go", "s5")] == "train"
    assert result.sources[0].split_method == "official lists (splits/v0.02)"
    assert not any("official split lists" in w for w in result.warnings)


def test_auto_falls_back_to_speaker_hash_when_lists_put_everything_in_test(word_folder):
    speakers = [f"s{i}" for i in range(20)]
    src = word_folder(words={"go": 1}, speakers=speakers)
    _with_lists(src, ["go/s0_nohash_0.wav"], [f"go/s{i}_nohash_0.wav" for i in range(1, 19)])
    result = scan([src], "auto")
    assert result.sources[0].split_method == "speaker-hash"
    assert any("splitting by a hash of the speaker id instead" in w for w in result.warnings)
    assert {c.split for c in result.clips} == {"train", "validation", "test"}
    forced = scan([src], "official")
    assert sum(c.split == "test" for c in forced.clips) == 18
    assert any("used anyway" in w for w in forced.warnings)


def test_split_by_official_without_lists_is_an_error(word_folder):
    src = word_folder(words={"go": 1}, noise_seconds=None)
    with pytest.raises(DataError, match="no source has validation_list.txt"):
        scan([src], "official")
    with pytest.raises(DataError, match="unknown split method"):
        scan([src], "random")
    with pytest.raises(DataError, match="does not exist"):
        scan([src / "nope"])


def test_one_speaker_word_warns_and_subfolder_speakers(tmp_path):
    src = tmp_path / "own"
    for spk in ("ann", "ben", "cid", "dot"):
        for n in range(2):
            write_audio(src / "lamp" / spk / f"take{n}.wav", tone_word("lamp", seed=n))
    write_audio(src / "door" / "eve_1.wav", tone_word("door"))
    write_audio(src / "door" / "eve_2.wav", tone_word("door", seed=3))
    result = scan([src])
    assert detect_kind(src) == "own" and result.sources[0].kind == "own"
    assert {c.speaker for c in result.clips if c.word == "lamp"} == {"ann", "ben", "cid", "dot"}
    assert any("word 'door' has one speaker only (eve)" in w for w in result.warnings)
    assert all(len(s) == 1 for s in _splits_by_speaker(result.clips).values())


def test_noise_folders_are_found(tmp_path, word_folder):
    src = word_folder(words={"go": 1})
    write_audio(src / "_silence_" / "0001.wav", np.zeros(16000, dtype=np.float32) + 0.01)
    extra = tmp_path / "my_noise" / "kitchen"
    write_audio(extra / "fridge.flac", np.full(20000, 0.01, dtype=np.float32), fmt="FLAC")
    (extra / "broken.wav").write_text("nope")
    result = scan([src], noise_dirs=[tmp_path / "my_noise"])
    names = sorted(Path(n.path).name for n in result.noise_files)
    assert names == ["0001.wav", "fridge.flac", "hum.wav"]
    assert any(r.reason.startswith("noise file: not a readable audio file") for r in result.rejected)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW"])
@pytest.mark.parametrize("channels", [1, 2])
def test_fast_wav_header_agrees_with_soundfile(tmp_path, subtype, channels):
    import soundfile as sf

    from kws_kit.data import wavfile

    x = np.random.default_rng(0).normal(0, 0.1, (12345, channels)).astype(np.float32)
    path = write_audio(tmp_path / "a.wav", x, sr=44100, subtype=subtype)
    info = sf.info(str(path))
    floating = info.subtype in ("FLOAT", "DOUBLE")
    fast = wavfile.header_info(path)
    assert fast is None or fast == (info.samplerate, info.channels, info.frames, floating)
    assert (fast is None) == (subtype == "ULAW")  # compressed formats take the soundfile path
    truncated = tmp_path / "t.wav"
    truncated.write_bytes(path.read_bytes()[:3000])
    assert wavfile.header_info(truncated) in (None, (44100, channels, sf.info(str(truncated)).frames, floating))


def test_fast_pcm16_reader_equals_general_loader(tmp_path):
    from kws_kit import audio_io
    from kws_kit.data import wavfile

    x = np.random.default_rng(1).normal(0, 0.2, 40000).astype(np.float32)
    path = str(write_audio(tmp_path / "a.wav", x))
    for offset, duration in [(0.0, None), (0.3, 1.0), (2.4, 1.0), (0.00006, 0.5)]:
        fast = wavfile.read_pcm16_mono(path, 16000, offset, duration)
        assert fast is not None and np.array_equal(fast, audio_io.load(path, 16000, offset, duration))
    assert wavfile.read_pcm16_mono(str(write_audio(tmp_path / "b.wav", x, sr=8000)), 16000, 0, None) is None
    assert wavfile.read_pcm16_mono(str(write_audio(tmp_path / "c.wav", x, subtype="PCM_24")), 16000, 0, None) is None


def test_scan_command_summarises_a_folder(word_folder, capsys):
    from kws_kit.cli import main

    src = word_folder(words={"go": 1, "stop": 1}, speakers=[f"s{i}" for i in range(12)])
    (src / "go" / "bad_nohash_0.wav").write_text("nope")
    assert main(["data", "scan", "--source", str(src)]) == 0
    out = capsys.readouterr().out
    assert f"{src}: speech_commands, 24 clips, 1 noise files, 1 rejected, split: speaker-hash" in out
    assert "words: go (12), stop (12)" in out and "rejected " in out and "bad_nohash_0.wav" in out


def test_scan_progress_moves_per_file(tmp_path, monkeypatch):
    """The scanning bar counts files, not folders: one word folder of long recordings
    (cut one by one) must not hold the bar still until the whole folder is done."""
    from kws_kit.data import scan as scan_module

    src = tmp_path / "src"
    for word in ("go", "stop"):
        for s in ("a", "b", "c"):
            write_audio(src / word / f"{s}_nohash_0.wav", tone_word(word))
    write_audio(src / "_background_noise_" / "hum.wav", np.zeros(32000, dtype=np.float32))
    events = []

    class FakeBar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_task(self, description, total=None):
            events.append(("total", total))
            return 0

        def advance(self, task, n=1):
            events.append(("advance", n))

    monkeypatch.setattr(scan_module.progress, "make_progress", lambda: FakeBar())
    scan([src], "speaker-hash")
    assert events[0] == ("total", 7)
    advances = [n for kind, n in events[1:] if kind == "advance"]
    assert sum(advances) == 7 and advances.count(1) >= 6  # every word file moves the bar by itself


def test_float_clips_with_nan_are_rejected_when_scanned(tmp_path):
    """NaN/inf can only live in floating-point files; those are decoded at scan time, so a
    bad one is reported by curate instead of stopping training later. Integer files are
    never decoded (scanning stays header-only)."""
    src = tmp_path / "src"
    for s in ("a", "b", "c"):
        write_audio(src / "go" / f"{s}_nohash_0.wav", tone_word("go"), subtype="FLOAT")
    bad = tone_word("go").astype(np.float32)
    bad[4000] = np.nan
    write_audio(src / "go" / "nan_nohash_0.wav", bad, subtype="FLOAT")
    bad[4000] = np.inf
    write_audio(src / "go" / "inf_nohash_0.aiff", bad, subtype="FLOAT", fmt="AIFF")
    write_audio(src / "go" / "int_nohash_0.wav", tone_word("go"))
    clips, _, rejected = scan_sources([src], "speaker-hash")
    assert sorted(c.speaker for c in clips) == ["a", "b", "c", "int"]
    assert sorted(Path(r.path).name for r in rejected) == ["inf_nohash_0.aiff", "nan_nohash_0.wav"]
    assert all("NaN or infinite" in r.reason for r in rejected)
