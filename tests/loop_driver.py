"""One run of the device loop with stub model and front end, in the MicroPython subset.

Usage: <python or micropython> loop_driver.py ROOT MODE [ARGS...]
ROOT holds kwsrt/ (a copy of device/kwsrt) and loop_stubs.py. Prints one JSON
object. tests/test_device_loop.py runs it under CPython and `micropython` and
compares the two.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import loop_stubs  # noqa: E402
from kwsrt import config, loop, responders  # noqa: E402

LABELS = ["_silence_", "go", "stop"]
BUNDLE = {"labels": LABELS, "model": b"", "recognizer": {"inference_period_ms": 250},
          "frontend": {"version": 1, "hop_length": 320, "sample_rate": 16000}}


def run_wav(wav_path):
    lines = []
    pins = {}

    def pin_factory(name):
        pins[name] = responders.FakePin(name)
        return pins[name]

    cfg = config.validate_config({
        "board": "test", "verbose": True, "led_pin": "LED",
        "actions": {"go": [{"do": "led", "ms": 500}, {"do": "print"}, {"do": "pin", "pin": "D7", "ms": 100}]},
    })
    app = loop.build(cfg, BUNDLE, runner=loop_stubs.StubRunner(), frontend=loop_stubs.StubFrontend(),
                     emit=lines.append, pin_factory=pin_factory, wav_path=wav_path)
    app.run()
    return {"lines": lines, "led": pins["LED"].history, "d7": pins["D7"].history, "inferences": app.inferences,
            "blocks": app.blocks, "frames": app.frames, "now_ms": app.now_ms, "overruns": app.ring.overruns}


def steady_state_alloc(blocks):
    import gc

    cfg = config.validate_config({"board": "test", "led_pin": "LED",
                                  "actions": {"go": [{"do": "led", "ms": 500}]}})
    app = loop.build(cfg, BUNDLE, source=loop_stubs.StubSource(-1), runner=loop_stubs.StubRunner(),
                     frontend=loop_stubs.StubFrontend(), emit=print, pin_factory=responders.FakePin)
    app.run(400)  # 4 s of audio: window full, inferences running, recogniser ring full
    deltas = []
    for n in (0, blocks):
        gc.collect()
        before = gc.mem_alloc()
        app.run(n)
        deltas.append(gc.mem_alloc() - before)
    return {"empty": deltas[0], "run": deltas[1], "inferences": app.inferences, "blocks": app.blocks}


def config_errors():
    found = []
    bad = [
        {"board": "b", "actions": {"go": [{"do": "blink"}]}},
        {"board": "b", "actions": {"go": [{"do": "pin"}]}},
        {"board": "b", "actions": {"go": [{"do": "led", "ms": -1}]}},
        {"board": "b", "actions": {"go": [{"do": "call", "fn": "nodot"}]}},
        {"board": "b", "inference_period_ms": 0},
        {"actions": {}},
    ]
    for cfg in bad:
        try:
            config.validate_config(cfg)
            found.append(None)
        except config.ConfigError as exc:
            found.append(str(exc))
    for fe in ({"version": 2}, {"version": None}):
        try:
            config.check_frontend(fe)
            found.append(None)
        except config.ConfigError as exc:
            found.append(str(exc))
    try:
        config.check_labels(LABELS, 4)
    except config.ConfigError as exc:
        found.append(str(exc))
    try:
        config.check_action_labels({"up": []}, LABELS)
    except config.ConfigError as exc:
        found.append(str(exc))
    return {"errors": found}


def ring_checks():
    from kwsrt.audio import RingBuffer, convert_32_to_16

    ring = RingBuffer(4, 3)
    log = []
    for n in range(3):
        slot = ring.write_slot()
        for i in range(8):
            slot[i] = 16 * n + i
        ring.commit()
    log.append(ring.write_slot() is None)  # full: an overrun
    log.append(ring.overruns)
    log.append(list(ring.peek()))
    ring.advance()
    log.append(ring.available())
    ring.write(bytes(range(100, 112)))  # 1.5 slots: one fits, half is dropped
    log.append(ring.overruns)
    order = []
    while ring.peek() is not None:
        order.append(list(ring.peek())[0])
        ring.advance()
    log.append(order)
    for cycle in range(20):  # counters wrap many times
        ring.write(bytes([cycle] * 8))
        log.append(list(ring.peek())[0] == cycle)
        ring.advance()
    out = bytearray(4)
    convert_32_to_16(bytes([0x11, 0x22, 0x34, 0x12, 0, 0xFF, 0xFE, 0xFF]), out, 2)
    log.append(list(out))
    return {"ring": log}


if __name__ == "__main__":
    mode = sys.argv[2]
    if mode == "wav":
        result = run_wav(sys.argv[3])
    elif mode == "alloc":
        result = steady_state_alloc(int(sys.argv[3]))
    elif mode == "config":
        result = config_errors()
    else:
        result = ring_checks()
    print(json.dumps(result))
