"""``kws-kit listen``: the board's loop on the laptop microphone, with laptop actions.

The same ``kwsrt`` loop as the boards and ``simulate`` (ring buffer, device
front end, recogniser, responders), fed by :class:`SoundDeviceSource`
(PortAudio through ``sounddevice``; its callback thread only copies blocks into
the ring). Actions per label (``--on LABEL=ACTION``):

    browser:URL          open URL in the web browser
    cmd:PROG,ARG,...     run PROG with those arguments (no shell; output not captured)
    print                print a line "heard go (0.87) at 12.250 s"
    log:FILE             append the detection's event line to FILE

A rich Live panel shows the microphone level and the current top class; Ctrl-C
stops cleanly.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import AudioError, KwsError, ModelError

ACTION_KINDS = ("browser", "cmd", "print", "log")
LISTEN_RING_MS = 2000  # the laptop has memory to spare: ride out a slow first inference


def parse_action(spec: str) -> tuple[str, dict]:
    """"go=browser:https://x" -> ("go", {"do": "browser", "url": "https://x"})."""
    label, sep, action = spec.partition("=")
    if not sep or not label.strip() or not action:
        raise KwsError(f"--on {spec!r}: expected LABEL=ACTION, e.g. go=print or stop=cmd:notify-send,stop")
    label = label.strip()
    kind, _, arg = action.partition(":")
    if kind not in ACTION_KINDS:
        raise KwsError(f"--on {spec!r}: unknown action {kind!r}", hint=f"valid actions: {', '.join(ACTION_KINDS)}")
    if kind == "browser":
        if not arg:
            raise KwsError(f"--on {spec!r}: browser needs a URL (browser:https://...)")
        return label, {"do": "browser", "url": arg}
    if kind == "cmd":
        args = [a for a in arg.split(",")]
        if not arg or not args[0]:
            raise KwsError(f"--on {spec!r}: cmd needs a program (cmd:PROG,ARG,...)")
        return label, {"do": "cmd", "args": args}
    if kind == "log":
        if not arg:
            raise KwsError(f"--on {spec!r}: log needs a file (log:detections.jsonl)")
        return label, {"do": "log", "path": arg}
    return label, {"do": "print"}


def parse_actions(specs: list[str]) -> dict[str, list[dict]]:
    actions: dict[str, list[dict]] = {}
    for spec in specs:
        label, action = parse_action(spec)
        actions.setdefault(label, []).append(action)
    return actions


def host_action_factories(popen: Callable = subprocess.Popen, open_url: Callable = webbrowser.open) -> dict:
    """Responders ``extra`` factories for the laptop-only actions."""

    def browser(action, responders):
        url = action["url"]
        return lambda label, score, t_ms: open_url(url)

    def cmd(action, responders):
        args = list(action["args"])

        def run(label, score, t_ms):
            try:
                popen(args, stdin=subprocess.DEVNULL)
            except OSError as exc:  # reported as an err line by Responders
                raise RuntimeError(f"cannot run {args[0]}: {exc.strerror or exc}") from None

        return run

    def log(action, responders):
        path = Path(action["path"])
        from kws_kit.device.kwsrt.responders import event_det

        def write(label, score, t_ms):
            with path.open("a") as f:
                f.write(event_det(label, score, t_ms) + "\n")

        return write

    return {"browser": browser, "cmd": cmd, "log": log}


def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # the module imports but cannot load the PortAudio library
        raise AudioError(f"cannot use the microphone: {exc}",
                         hint="install PortAudio (Debian/Ubuntu: sudo apt install libportaudio2; macOS: brew install portaudio)") from None
    except ImportError:
        raise AudioError("cannot use the microphone: the sounddevice package is not installed",
                         hint="pip install 'kws-kit[mic]'") from None
    return sounddevice


class SoundDeviceSource:
    """Laptop microphone -> the loop's ring buffer (16 kHz int16 mono).

    PortAudio calls ``_callback`` on its own thread with each block; it copies
    the block into the ring (overruns counted there and in ``input_overflows``)
    and keeps the block's RMS level for the meter.
    """

    def __init__(self, ring, device=None, sample_rate: int = 16000):
        sd = _sounddevice()
        self.ring = ring
        self.level_dbfs = -120.0
        self.input_overflows = 0
        self._closed = threading.Event()
        try:
            self._stream = sd.RawInputStream(samplerate=sample_rate, channels=1, dtype="int16", device=device,
                                             blocksize=ring.slot_samples, callback=self._callback)
            self._stream.start()
        except Exception as exc:  # PortAudioError, ValueError for a bad device...
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise AudioError(f"cannot open the microphone: {msg}",
                             hint="check that one is connected and not used by another program (--device picks one)") from None

    @property
    def overruns(self) -> int:
        return self.ring.overruns + self.input_overflows

    def _callback(self, indata, frames, time_info, status) -> None:
        if status and getattr(status, "input_overflow", False):
            self.input_overflows += 1
        data = bytes(indata)
        self.ring.write(data)
        x = np.frombuffer(data, dtype=np.int16).astype(np.float32)
        rms = math.sqrt(float(np.dot(x, x)) / max(1, len(x))) / 32768.0
        self.level_dbfs = 20.0 * math.log10(max(rms, 1e-6))

    def fill(self, ring) -> bool:
        """The callback fills the ring; here only wait a little, or report the end of the stream."""
        if ring.available():
            return True
        if self._closed.is_set() or not self._stream.active:
            return False
        time.sleep(0.002)
        return True

    def close(self) -> None:
        self._closed.set()
        try:
            self._stream.stop()
            self._stream.close()
        except Exception:
            pass


class LiveView:
    """Level meter, top class and last detection in a rich Live panel (stderr)."""

    def __init__(self, labels, source, console=None):
        from rich.console import Console

        self.labels = labels
        self.source = source
        self.console = console or Console(stderr=True)
        self.top = ("", 0)
        self.last = "nothing yet"
        self._live = None

    def render(self):
        from rich.table import Table

        level = self.source.level_dbfs if self.source is not None else -120.0
        width = 30
        filled = int(round(width * min(1.0, max(0.0, (level + 60.0) / 60.0))))
        table = Table.grid(padding=(0, 2))
        table.add_row("level", f"[green]{'#' * filled}[/][dim]{'.' * (width - filled)}[/] {level:6.1f} dBFS")
        table.add_row("top", f"{self.top[0]} {self.top[1] / 256:.2f}")
        table.add_row("heard", self.last)
        table.add_row("", "[dim]Ctrl-C to stop[/]")
        return table

    def __enter__(self):
        from rich.live import Live

        self._live = Live(self.render(), console=self.console, refresh_per_second=8, transient=True)
        self._live.__enter__()
        return self

    def __exit__(self, *exc):
        self._live.__exit__(*exc)

    def update(self, t_ms, scores):
        best = max(range(len(scores)), key=scores.__getitem__)
        self.top = (self.labels[best], int(scores[best]))
        if self._live is not None:
            self._live.update(self.render())

    def detection_line(self, line: str) -> None:
        if line.startswith('{"ev":"det"'):
            import json

            ev = json.loads(line)
            self.last = f"{ev['label']} ({ev['score']:.2f}) at {ev['t_ms'] / 1000:.2f} s"


def listen(bundle: str | Path, actions: dict[str, list[dict]] | None = None, *, device=None,
           seconds: float | None = None, verbose: bool = False, live: bool = True,
           out: Callable[[str], None] = print, popen: Callable = subprocess.Popen,
           open_url: Callable = webbrowser.open) -> dict:
    """Listen until Ctrl-C (or ``seconds`` of audio); returns a summary dict.

    Event lines (det, and scores with ``verbose``) and print actions go to ``out``.
    """
    from kws_kit.device.kwsrt import audio as device_audio
    from kws_kit.device.kwsrt import config as kconfig
    from kws_kit.device.kwsrt import loop as kloop

    from .bundle import load_bundle
    from .simulate import HostRunner

    host_bundle = load_bundle(bundle)
    actions = actions or {}
    for label in actions:
        if label not in host_bundle.labels:
            raise KwsError(f"--on {label}=...: {label!r} is not a label of this model",
                           hint=f"labels: {', '.join(host_bundle.labels)}")
    try:
        device_bundle = kconfig.read_bundle(str(Path(bundle)))
        config = kconfig.validate_config({"board": "host", "bundle_dir": str(bundle), "verbose": verbose,
                                          "ring_ms": LISTEN_RING_MS, "audio": {"source": "sounddevice"}})
    except kconfig.ConfigError as exc:
        raise ModelError(str(exc)) from None
    config["actions"] = actions  # host actions are checked above and built by the factories below
    runner = HostRunner(device_bundle["model"])
    frontend, _ = kloop.make_frontend(device_bundle["frontend"], runner.input_scale, runner.input_zero_point, prefer=("ulab",))

    period = kconfig.inference_period(config, device_bundle["recognizer"])
    step = kloop.block_samples(device_bundle["frontend"]["hop_length"], period)
    ring = device_audio.RingBuffer(step, kloop.ring_slots(LISTEN_RING_MS, step))
    view: LiveView | None = None

    def emit(line: str) -> None:
        if view is not None:
            view.detection_line(line)
        out(line)

    def observe(t_ms, scores, fe_us, frames, infer_us):
        if view is not None:
            view.update(t_ms, scores)
        if seconds is not None and t_ms >= seconds * 1000:
            app.stop()

    source = SoundDeviceSource(ring, device)
    try:
        try:
            app = kloop.build(config, device_bundle, source=source, runner=runner, frontend=frontend, emit=emit,
                              observer=observe, extra_actions=host_action_factories(popen, open_url), ring=ring)
        except kconfig.ConfigError as exc:
            raise ModelError(str(exc)) from None
        if live and sys.stderr.isatty():
            view = LiveView(device_bundle["labels"], source)
        interrupted = False
        try:
            if view is not None:
                with view:
                    app.run()
            else:
                app.run()
        except KeyboardInterrupt:
            interrupted = True
    finally:
        source.close()
    return {"seconds": app.now_ms / 1000.0, "inferences": app.inferences,
            "detections": app.responders.detections, "overruns": source.overruns, "interrupted": interrupted}
