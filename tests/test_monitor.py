"""kws-kit monitor: JSON event lines from a board (a pty here), other lines pass through."""

from __future__ import annotations

import io
import json
import os
import pty
import threading
import time
import tty

import pytest

from kws_kit.errors import BoardError
from kws_kit.monitor import MonitorState, monitor, parse_event

LINES = [
    json.dumps({"ev": "start", "board": "nucleo_l476rg", "runner": "kws", "labels": ["_silence_", "_unknown_", "go", "stop"], "heap_free": 30000}),
    "MicroPython v1.24 on 2024-11-29; a plain line",
    json.dumps({"ev": "scores", "t_ms": 250, "scores": [10, 20, 200, 25], "infer_ms": 41, "fe_ms": 7}),
    json.dumps({"ev": "det", "label": "go", "score": 0.87, "t_ms": 12345}),
    '{"ev": broken json',
    json.dumps({"ev": "err", "msg": "audio overrun"}),
]


def test_parse_event():
    assert parse_event(LINES[0])["ev"] == "start"
    assert parse_event(LINES[1]) is None and parse_event(LINES[4]) is None
    assert parse_event('{"no_ev": 1}') is None and parse_event("[1, 2]") is None


def test_state_tracks_labels_scores_detections_and_text():
    state = MonitorState()
    for line in LINES:
        state.feed(line)
    probs = state.probabilities()
    assert list(probs) == ["_silence_", "_unknown_", "go", "stop"]
    assert probs["go"] == pytest.approx(200 / 255) and max(probs, key=probs.get) == "go"
    assert [d["label"] for d in state.detections] == ["go"]
    assert state.errors == ["audio overrun"]
    assert state.text == [LINES[1], LINES[4]]
    assert state.infer_ms == 41
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100)
    console.print(state.render())
    shown = console.file.getvalue()
    assert "DETECTED go" in shown and "0.78" in shown and "audio overrun" in shown


def test_monitor_reads_a_pty_and_passes_other_lines_through():
    master, slave = pty.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)

    def board():
        time.sleep(0.3)
        for line in LINES:
            os.write(master, (line + "\r\n").encode())
            time.sleep(0.02)

    writer = threading.Thread(target=board)
    writer.start()
    printed = []
    try:
        state = monitor(port, duration=1.5, live=False, echo=printed.append)
    finally:
        writer.join()
        os.close(master)
        os.close(slave)
    assert state.detections[0]["label"] == "go" and state.scores == [10, 20, 200, 25]
    assert LINES[1] in printed and "DETECTED go 0.87" in printed and "board error: audio overrun" in printed


def test_ctrl_c_exits_cleanly():
    class Interrupting(io.BytesIO):
        def read(self, n=-1):
            data = super().read(n)
            if not data:
                raise KeyboardInterrupt
            return data

    stream = Interrupting((LINES[3] + "\n").encode())
    state = monitor(stream=stream, live=True)  # live view on stderr, stopped on Ctrl-C
    assert state.detections[0]["label"] == "go"


def test_bad_port_is_a_board_error():
    with pytest.raises(BoardError, match="cannot open /dev/ttyNOPE"):
        monitor("/dev/ttyNOPE", duration=0.1, live=False)
