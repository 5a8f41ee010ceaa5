"""`kws-kit data record` with the sounddevice module replaced by a fake microphone."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import soundfile as sf

from kws_kit.cli import main
from kws_kit.data import own

from conftest import tone_word


class FakePortAudioError(Exception):
    pass


class FakeSoundDevice:
    """Plays a scripted list of takes (float arrays at ``rate``) as if spoken into a microphone."""

    PortAudioError = FakePortAudioError

    def __init__(self, takes, rate=16000, has_input=True, busy=False, refuse_16k=False):
        self.takes, self.rate, self.has_input, self.busy, self.refuse_16k = list(takes), rate, has_input, busy, refuse_16k
        self.opened_rates = []

    def query_devices(self, kind=None):
        if not self.has_input:
            raise FakePortAudioError("Error querying device -1")
        return {"name": "fake mic", "default_samplerate": float(self.rate), "max_input_channels": 1}

    def InputStream(self, samplerate, channels, dtype):  # noqa: N802 (sounddevice naming)
        if self.busy:
            raise FakePortAudioError("Error opening InputStream: Device unavailable [PaErrorCode -9985]")
        if self.refuse_16k and samplerate == 16000:
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")
        self.opened_rates.append(samplerate)
        return _FakeStream(self.takes.pop(0) if self.takes else np.zeros(int(1.5 * samplerate), np.float32))


class _FakeStream:
    def __init__(self, audio):
        self.audio, self.position = audio, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, frames):
        block = self.audio[self.position : self.position + frames]
        block = np.pad(block, (0, frames - len(block)))
        self.position += frames
        return block.reshape(-1, 1).astype(np.float32), False


def _take(word="house", seed=0, rate=16000):
    x = tone_word(word, seed=seed, sr=rate, seconds=1.5, length_s=0.4)
    return x


@pytest.fixture
def answers(monkeypatch):
    replies = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": replies.pop(0) if replies else "")
    return replies


def test_record_writes_one_second_clips_and_retakes_silence(tmp_path, monkeypatch, answers, capsys):
    silent = np.zeros(int(1.5 * 16000), dtype=np.float32)
    fake = FakeSoundDevice([_take(seed=1), silent, _take(seed=2), _take(seed=3)])
    monkeypatch.setattr(own, "_import_sounddevice", lambda: fake)
    (tmp_path / "rec" / "house").mkdir(parents=True)
    (tmp_path / "rec" / "house" / "kim_nohash_4.wav").write_bytes(b"")  # numbering continues after it
    rc = main(["data", "record", "--word", "House", "--count", "3", "--dest", str(tmp_path / "rec"), "--speaker", "Kim"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    names = sorted(p.name for p in (tmp_path / "rec" / "house").glob("Kim_nohash_*.wav"))
    assert names == ["Kim_nohash_0.wav", "Kim_nohash_1.wav", "Kim_nohash_2.wav"]
    assert "heard nothing" in captured.err and "level [" in captured.err
    for name in names:
        info = sf.info(str(tmp_path / "rec" / "house" / name))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
        x, _ = sf.read(str(tmp_path / "rec" / "house" / name))
        energy = np.abs(x) > 0.05
        assert energy[4000:12000].sum() > 0.9 * energy.sum()  # the word sits in the middle


def test_record_numbering_continues_and_q_stops(tmp_path, monkeypatch, answers):
    fake = FakeSoundDevice([_take(seed=4), _take(seed=5)])
    monkeypatch.setattr(own, "_import_sounddevice", lambda: fake)
    (tmp_path / "house").mkdir()
    (tmp_path / "house" / "kim_nohash_4.wav").write_bytes(b"")
    answers += ["", "q"]
    written = own.record_takes("house", 5, tmp_path, speaker="kim")
    assert [p.name for p in written] == ["kim_nohash_5.wav"]


def test_record_falls_back_to_device_rate(tmp_path, monkeypatch, answers):
    fake = FakeSoundDevice([_take(seed=6, rate=48000)], rate=48000, refuse_16k=True)
    written = own.record_takes("go", 1, tmp_path, speaker="x", sd=fake)
    assert fake.opened_rates == [48000]
    assert sf.info(str(written[0])).samplerate == 16000


@pytest.mark.parametrize(
    "fake, message",
    [
        (FakeSoundDevice([], has_input=False), "no microphone found"),
        (FakeSoundDevice([], busy=True), "cannot open the microphone"),
    ],
)
def test_microphone_problems_are_one_line_errors(tmp_path, monkeypatch, answers, capsys, fake, message):
    monkeypatch.setattr(own, "_import_sounddevice", lambda: fake)
    rc = main(["data", "record", "--word", "go", "--count", "2", "--dest", str(tmp_path)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not list(tmp_path.rglob("*.wav"))


def test_missing_portaudio_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import now fails like a missing PortAudio
    rc = main(["data", "record", "--word", "go", "--count", "1", "--dest", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot use the microphone" in err and "PortAudio" in err


def test_take_shorter_than_a_clip_is_refused(tmp_path, monkeypatch, answers, capsys):
    # --seconds 0 captured nothing, "heard nothing" asked for the take again, forever
    fake = FakeSoundDevice([])
    monkeypatch.setattr(own, "_import_sounddevice", lambda: fake)
    rc = main(["data", "record", "--word", "go", "--count", "1", "--dest", str(tmp_path), "--seconds", "0"])
    err = capsys.readouterr().err
    assert rc == 1 and "error: --seconds 0: a take must last between 1 and 30 seconds" in err
    assert fake.opened_rates == [] and not list(tmp_path.iterdir())


def test_speaker_defaults_to_the_login_name_or_a_fallback(tmp_path, monkeypatch, answers):
    import getpass

    monkeypatch.setattr(getpass, "getuser", lambda: "ann lee")
    assert own.record_takes("go", 1, tmp_path, sd=FakeSoundDevice([_take(seed=7)]))[0].name == "ann-lee_nohash_0.wav"

    def no_name():
        raise KeyError("getpwuid(): uid not found: 1234")

    monkeypatch.setattr(getpass, "getuser", no_name)
    assert own.record_takes("go", 1, tmp_path, sd=FakeSoundDevice([_take(seed=8)]))[0].name == "speaker_nohash_0.wav"
