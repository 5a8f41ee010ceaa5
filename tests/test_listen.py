"""`kws-kit listen` with the microphone replaced by a fake sounddevice stream playing a WAV."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundle  # noqa: E402

from kws_kit.cli import main  # noqa: E402
from kws_kit.errors import AudioError, KwsError  # noqa: E402
from kws_kit.listen import listen, parse_actions  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return runtime_bundle.tiny_bundle(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="module")
def stream():
    return runtime_bundle.word_stream(40.0, seed=1)


def fake_sounddevice(audio: np.ndarray, fail_open: str | None = None, speed: float = 40.0):
    """A module with RawInputStream that feeds ``audio`` to the callback from a thread,
    ``speed`` times faster than real time, then goes inactive like a finished stream."""
    mod = types.ModuleType("sounddevice")
    mod.opened = []

    class PortAudioError(Exception):
        pass

    class RawInputStream:
        def __init__(self, samplerate, channels, dtype, device, blocksize, callback):
            if fail_open:
                raise PortAudioError(fail_open)
            assert (samplerate, channels, dtype) == (16000, 1, "int16")
            self.blocksize, self.callback = blocksize, callback
            self.active = False
            self.closed = False
            self._stop = threading.Event()
            mod.opened.append(self)

        def _feed(self):
            pcm = audio.astype("<i2")
            n = self.blocksize
            for i in range(0, len(pcm) - n + 1, n):
                if self._stop.is_set():
                    break
                self.callback(memoryview(pcm[i : i + n].tobytes()), n, None, None)
                time.sleep(n / 16000 / speed)
            self.active = False

        def start(self):
            self.active = True
            self._thread = threading.Thread(target=self._feed, daemon=True)
            self._thread.start()

        def stop(self):
            self._stop.set()
            self._thread.join(5)

        def close(self):
            self.closed = True

    mod.RawInputStream = RawInputStream
    mod.PortAudioError = PortAudioError
    return mod


def test_detections_fire_the_actions(bundle, stream, monkeypatch, tmp_path):
    from kws_kit.simulate import simulate

    wav = tmp_path / "s.wav"
    stream.save_wav(wav)
    expected = [d["label"] for d in simulate(bundle, wav).detections]
    assert expected
    sd = fake_sounddevice(stream.audio)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    launched, opened, lines = [], [], []
    log = tmp_path / "dets.jsonl"
    actions = parse_actions(["go=cmd:notify-send,heard go", "go=browser:https://example.org", "go=print",
                             f"go=log:{log}", "stop=print"])
    summary = listen(bundle, actions, live=False, out=lines.append,
                     popen=lambda args, **kw: launched.append(args), open_url=opened.append)
    n_go = expected.count("go")
    assert n_go >= 1
    assert launched == [["notify-send", "heard go"]] * n_go  # an argument list: no shell involved
    assert opened == ["https://example.org"] * n_go
    assert sum(line.startswith("heard go") for line in lines) == n_go
    assert len(log.read_text().splitlines()) == n_go
    assert summary["detections"] == len(expected) and not summary["interrupted"]
    assert summary["overruns"] == 0 and sd.opened[0].closed


def test_ctrl_c_stops_cleanly(bundle, stream, monkeypatch):
    sd = fake_sounddevice(stream.audio)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)

    def interrupt(url):
        raise KeyboardInterrupt

    summary = listen(bundle, parse_actions(["go=browser:https://example.org"]), live=False, out=lambda _: None,
                     open_url=interrupt)
    assert summary["interrupted"] and sd.opened[0].closed
    assert summary["seconds"] < len(stream.audio) / 16000


def test_seconds_limit(bundle, stream, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(stream.audio))
    summary = listen(bundle, {}, seconds=3.0, live=False, out=lambda _: None)
    assert summary["inferences"] == 9  # 1.0 s .. 3.0 s every 250 ms
    assert 3.0 <= summary["seconds"] < 3.3


def test_microphone_problems_are_one_line_errors(bundle, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(np.zeros(16000, np.int16), fail_open="Device unavailable [PaErrorCode -9985]"))
    with pytest.raises(AudioError, match="cannot open the microphone: Device unavailable"):
        listen(bundle, {}, live=False)
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    with pytest.raises(AudioError, match="sounddevice package is not installed"):
        listen(bundle, {}, live=False)


def test_real_sounddevice_without_portaudio(bundle, capsys):
    """Here PortAudio is not installed: the CLI says so in one line."""
    try:
        import sounddevice  # noqa: F401
        pytest.skip("PortAudio is available on this machine")
    except OSError:
        pass
    rc = main(["listen", "--model", str(bundle), "--on", "go=print"])
    err = capsys.readouterr().err
    assert rc == 1 and "PortAudio" in err and len(err.strip().splitlines()) == 1


def test_bad_actions(bundle):
    with pytest.raises(KwsError) as caught:
        parse_actions(["go=shout:loud"])
    assert "unknown action 'shout'" in caught.value.one_line() and "browser, cmd, print, log" in caught.value.one_line()
    for spec in ("go", "go=browser", "go=cmd:", "=print", "go=log"):
        with pytest.raises(KwsError):
            parse_actions([spec])
    assert parse_actions(["stop=cmd:notify-send,stop"]) == {"stop": [{"do": "cmd", "args": ["notify-send", "stop"]}]}
    with pytest.raises(KwsError) as caught:
        listen(bundle, parse_actions(["up=print"]), live=False)
    assert "'up' is not a label" in caught.value.one_line() and "_silence_, _unknown_, go, stop" in caught.value.one_line()
