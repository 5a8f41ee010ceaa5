"""`kws-kit data synth`: espeak-ng voices, cache layout, incremental re-runs, use as a curation source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from kws_kit.cli import main
from kws_kit.data import synth
from kws_kit.data.curate import CurateOptions, curate, load_curated
from kws_kit.data.scan import detect_kind
from kws_kit.errors import KwsError


def test_synth_two_words_two_voices_then_adds_only_missing(tmp_path, capsys):
    dest = tmp_path / "synth"
    rc = main(["data", "synth", "--words", "go,stop", "--count", "4", "--dest", str(dest),
               "--voices", "en-us,de", "--variants", "none,f2", "--seed", "1"])
    assert rc == 0, capsys.readouterr().err
    files = sorted(p.relative_to(dest).as_posix() for p in dest.glob("*/*.wav") if not p.parent.name.startswith("_"))
    assert len(files) == 8
    speakers = {f.split("/")[1].split("_nohash_")[0] for f in files}
    assert speakers == {"espeak-en-us", "espeak-en-us-f2", "espeak-de", "espeak-de-f2"}
    index = json.loads((dest / "synth.json").read_text())
    assert sorted(index["clips"]) == files
    entry = index["clips"][files[0]]
    assert {"word", "speaker", "voice", "variant", "rate", "pitch", "range", "seed"} <= set(entry)
    for f in files:
        x, rate = sf.read(str(dest / f), dtype="float32")
        assert rate == 16000 and x.shape == (16000,)
        peak = np.max(np.abs(x))
        assert 10 ** (-9.5 / 20) < peak < 10 ** (-0.9 / 20)
        loud = np.flatnonzero(np.abs(x) > 0.01 * peak)
        assert loud[0] > 0 and loud[-1] < 15999  # trimmed and centred, with room around it
        assert abs((loud[0] + loud[-1]) / 2 - 8000) < 400
    assert sorted(p.name for p in (dest / "_background_noise_").iterdir()) == [
        "brown_noise.wav", "pink_noise.wav", "white_noise.wav"]

    before = {f: (dest / f).read_bytes() for f in files}
    added = synth.synthesize(["go", "stop"], 6, dest, seed=1, voices=["en-us", "de"], variants=["", "f2"])
    assert added == {"go": 2, "stop": 2}
    assert all((dest / f).read_bytes() == data for f, data in before.items())  # kept, not regenerated
    assert len(json.loads((dest / "synth.json").read_text())["clips"]) == 12
    assert synth.synthesize(["go"], 6, dest, seed=1, voices=["en-us", "de"], variants=["", "f2"]) == {"go": 0}

    # the cache is a curation source: kind synth, one voice per split, generated noise mixed in
    assert detect_kind(dest) == "synth"
    ds = load_curated(curate(CurateOptions(keywords=["go"], sources=[str(dest)], out=str(tmp_path / "ds"))))
    owner = {}
    for r in ds.rows:
        if r.speaker:
            assert owner.setdefault(r.speaker, r.split) == r.split
    assert set(owner.values()) == {"train", "validation", "test"}
    assert any(r.noise_path.endswith("_noise.wav") for r in ds.rows)


def test_synth_errors_are_clear(tmp_path, capsys):
    rc = main(["data", "synth", "--words", "go", "--count", "1", "--dest", str(tmp_path / "a"), "--voices", "xx-nosuch"])
    err = capsys.readouterr().err
    assert rc == 1 and "unknown espeak voice" in err and "Traceback" not in err
    with pytest.raises(KwsError, match="unknown espeak variant"):
        synth.synthesize(["go"], 1, tmp_path / "b", voices=["en"], variants=["zz9"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(KwsError, match="not a synth cache"):
        synth.synthesize(["go"], 1, tmp_path / "c")
    with pytest.raises(KwsError, match="invalid word"):
        synth.synthesize(["../up"], 1, tmp_path / "d")
    rc = main(["data", "synth", "--words", "go", "--count", "1", "--dest", str(tmp_path / "e"), "--seed", "-1"])
    err = capsys.readouterr().err
    assert rc == 1 and "error: --seed -1: must not be negative" in err and "internal error" not in err
    assert not (tmp_path / "e").exists()


def test_generated_noise_colours():
    white, pink, brown = (synth.generated_noise(k, 4, seed=0) for k in ("white", "pink", "brown"))
    for x in (white, pink, brown):
        assert abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - 10 ** (-26 / 20)) < 0.005

    def low_share(x):
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        return spectrum[: len(spectrum) // 16].sum() / spectrum.sum()

    assert low_share(white) < low_share(pink) < low_share(brown)


def test_interrupted_synth_documents_what_it_made_and_a_bad_voice_creates_nothing(tmp_path, monkeypatch):
    dest = tmp_path / "synth"
    real = synth.render_word
    calls = []

    def stop_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third clip is synthesised
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "render_word", stop_on_third)
    with pytest.raises(KeyboardInterrupt):
        synth.synthesize(["go"], 5, dest, voices=["en-us"], variants=["", "f2"])
    made = sorted(p.relative_to(dest).as_posix() for p in dest.glob("go/*.wav"))
    assert len(made) == 2 and sorted(json.loads((dest / "synth.json").read_text())["clips"]) == made
    monkeypatch.setattr(synth, "render_word", real)
    assert synth.synthesize(["go"], 5, dest, voices=["en-us"], variants=["", "f2"]) == {"go": 3}
    assert len(json.loads((dest / "synth.json").read_text())["clips"]) == 5

    with pytest.raises(KwsError, match="unknown espeak voice 'xx-nosuch'"):
        synth.synthesize(["go"], 1, tmp_path / "typo", voices=["en", "xx-nosuch"])
    assert not (tmp_path / "typo").exists()
