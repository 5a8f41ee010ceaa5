"""Per-hop cost of the device loop's stages in real MicroPython (unix port), for issue #4.

Runs, in a MicroPython binary built with the ``kws`` C module and/or ulab (see
docs/runtime.md for the 32-bit build), the shipped bundle's front end and model:

* ``kws`` front end: ``kws.Frontend(spec, scale, zero_point)``, the Nucleo's (the rolling
  window kept as int8), one ``push`` of a 320-sample hop = one new frame;
* ``ulab`` front end: ``kwsrt.frontend.StreamingFrontend`` (the ESP32-S3 / OpenMV path);
* ``kws`` model: one ``kws.Model.invoke`` on the int8 window (the loop runs it every 250 ms).

Each is timed with ``time.ticks_us`` over ``--hops`` hops of noise + tone audio after a warm-up,
pinned to one core; the figure is the median of ``--repeats`` runs (µs per hop / per
inference). These are x86 host timings of the MicroPython code path, not board timings: the
Cortex-M4 estimate of the C front end and engine is bench/bench_m4_cycles.py.

Usage::

    python bench/bench_micropython_hop.py --micropython BUILD/micropython [--hops 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "bundles" / "yes_no_go_stop"

PROBE = """
import sys, json, time
sys.path.insert(0, 'lib')
what, hops = sys.argv[1], int(sys.argv[2])
spec = json.load(open('frontend.json'))
pcm = open('pcm.bin', 'rb').read()
hop = 640  # bytes: 320 int16 samples
n_hops = len(pcm) // hop
mv = memoryview(pcm)
import kws
model = kws.Model(open('model.tflite', 'rb').read(), 40000)
scale, zp = model.input_scale, model.input_zero_point
if what == 'kws_frontend':
    fe = kws.Frontend(spec, scale, zp)
    step = fe.push
elif what == 'ulab_frontend':
    from kwsrt.frontend import StreamingFrontend
    fe = StreamingFrontend(spec, scale, zp)
    step = fe.push
for i in range(60):  # warm-up: fill the window
    if what != 'kws_model':
        step(mv[(i % n_hops) * hop:(i % n_hops + 1) * hop])
if what == 'kws_model':
    x = bytearray(490)
    for i in range(490):
        x[i] = (i * 37) & 255
    out = bytearray(model.output_size)
    t0 = time.ticks_us()
    for i in range(hops):
        model.invoke(x, out)
    dt = time.ticks_diff(time.ticks_us(), t0)
else:
    t0 = time.ticks_us()
    for i in range(hops):
        step(mv[(i % n_hops) * hop:(i % n_hops + 1) * hop])
    dt = time.ticks_diff(time.ticks_us(), t0)
print('RESULT', json.dumps({'what': what, 'us': dt / hops}))
"""


def write_inputs(work: Path) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 4) / 16000
    pcm = 3000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 800, len(t))
    (work / "pcm.bin").write_bytes(np.clip(pcm, -32768, 32767).astype("<i2").tobytes())
    for name in ("frontend.json", "model.tflite"):
        shutil.copy(BUNDLE / name, work / name)
    lib = work / "lib" / "kwsrt"
    lib.mkdir(parents=True)
    for src in (ROOT / "device" / "kwsrt").glob("*.py"):
        shutil.copy(src, lib / src.name)
    (work / "probe.py").write_text(PROBE)


def run(micropython: str, work: Path, what: str, hops: int) -> float | None:
    proc = subprocess.run(["taskset", "-c", "0", micropython, "-X", "heapsize=4M", "probe.py", what, str(hops)],
                          cwd=work, capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])["us"]
    if "ImportError" in proc.stderr or "ImportError" in proc.stdout:
        return None  # this build lacks kws or ulab
    raise RuntimeError(f"{what} failed: {proc.stdout[-800:]} {proc.stderr[-800:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micropython", required=True, help="MicroPython unix binary with the kws module (+ ulab)")
    ap.add_argument("--hops", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_inputs(work)
        for what in ("kws_frontend", "ulab_frontend", "kws_model"):
            runs = [run(args.micropython, work, what, args.hops if what != "kws_model" else max(50, args.hops // 5))
                    for _ in range(args.repeats)]
            if None in runs:
                results[what] = None
                continue
            results[what] = {"median_us": round(float(np.median(runs)), 1), "runs_us": [round(r, 1) for r in runs]}
    json.dump(results, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
