"""``kws-kit monitor``: read the board's JSON event lines and show them live.

Event lines are those of docs/device_contracts (one JSON object per line, key
``ev``: ``start``, ``det``, ``scores``, ``err``). Anything else the board
prints passes through unchanged. :class:`MonitorState` holds what the screen
shows, so it is testable without a terminal; :func:`monitor` reads a serial
port (or any file-like ``stream``) until Ctrl-C, EOF or ``duration``.
"""

from __future__ import annotations

import json
import time

from .errors import BoardError


def parse_event(line: str) -> dict | None:
    """The event in one line, or None for any other output."""
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "ev" in event else None


class MonitorState:
    """What the live view shows: labels, the latest scores, detections, errors, passed-through text."""

    def __init__(self, labels=None, keep: int = 10):
        self.labels: list[str] = list(labels or [])
        self.scores: list[int] = []
        self.detections: list[dict] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.start: dict | None = None
        self.infer_ms = self.fe_ms = None
        self.keep = keep

    def feed(self, line: str) -> dict | None:
        event = parse_event(line)
        if event is None:
            if line.strip():
                self.text = (self.text + [line.rstrip("\r\n")])[-self.keep:]
            return None
        kind = event.get("ev")
        if kind == "start":
            self.start = event
            self.labels = list(event.get("labels") or self.labels)
        elif kind == "det":
            self.detections = (self.detections + [event])[-self.keep:]
        elif kind == "scores":
            self.scores = [int(s) for s in event.get("scores", [])]
            self.infer_ms, self.fe_ms = event.get("infer_ms"), event.get("fe_ms")
        elif kind == "err":
            self.errors = (self.errors + [str(event.get("msg", ""))])[-self.keep:]
        return event

    def probabilities(self) -> dict[str, float]:
        """Scores 0..255 as probabilities per label."""
        names = self.labels or [f"class {i}" for i in range(len(self.scores))]
        return {name: s / 255.0 for name, s in zip(names, self.scores)}

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts = []
        if self.start:
            parts.append(Text(f"board {self.start.get('board', '?')}  runner {self.start.get('runner', '?')}  "
                              f"heap free {self.start.get('heap_free', '?')}", style="bold"))
        probs = self.probabilities()
        if probs:
            table = Table(title=f"scores (inference {self.infer_ms} ms, front end {self.fe_ms} ms)", expand=False)
            table.add_column("label")
            table.add_column("p", justify="right")
            table.add_column("")
            for name, p in probs.items():
                table.add_row(name, f"{p:.2f}", "#" * int(round(p * 30)))
            parts.append(table)
        for det in self.detections:
            parts.append(Text(f"DETECTED {det.get('label')}  score {float(det.get('score', 0)):.2f}  "
                              f"at {det.get('t_ms')} ms", style="bold green"))
        for msg in self.errors:
            parts.append(Text(f"board error: {msg}", style="bold red"))
        for line in self.text:
            parts.append(Text(line, style="dim"))
        return Group(*parts)


def _open_serial(port: str, baudrate: int):
    import serial

    try:
        return serial.serial_for_url(port, baudrate=baudrate, timeout=0.1, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise BoardError(f"cannot open {port}: {' '.join(str(exc).split())}",
                         hint="close other programs using the port (mpremote, OpenMV IDE, a terminal)") from None


def monitor(port: str | None = None, *, baudrate: int = 115200, stream=None, duration: float | None = None,
            live: bool = True, echo=print, labels=None) -> MonitorState:
    """Show events until Ctrl-C, end of input or ``duration`` seconds; returns the final state."""
    state = MonitorState(labels)
    own = stream is None
    if own:
        if not port:
            raise BoardError("monitor needs --port (the board's serial port)")
        stream = _open_serial(port, baudrate)
    deadline = time.monotonic() + duration if duration else None
    view = None
    pending = b""
    try:
        if live:
            from rich.live import Live

            from .progress import console

            view = Live(state.render(), console=console, refresh_per_second=8, transient=False)
            view.start()
        while deadline is None or time.monotonic() < deadline:
            try:
                chunk = stream.read(256)
            except OSError as exc:
                raise BoardError(f"lost the board on {port} ({' '.join(str(exc).split())})") from None
            if not chunk:
                if not own:
                    break  # end of a file-like stream
                continue
            pending += chunk if isinstance(chunk, bytes) else chunk.encode()
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                event = state.feed(line)
                if not live:
                    if event is None:
                        echo(line)
                    elif event["ev"] == "det":
                        echo(f"DETECTED {event.get('label')} {float(event.get('score', 0)):.2f}")
                    elif event["ev"] == "err":
                        echo(f"board error: {event.get('msg')}")
            if view is not None:
                view.update(state.render())
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.stop()
        if own:
            stream.close()
    return state
