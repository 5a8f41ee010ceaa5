"""Instructions per inference of the kws C core vs the tflite-micro PyPI interpreter (valgrind callgrind).

    python bench/bench_cmodule.py [--models ds_cnn_s tds_resnet] [--n 10]

Both sides run N and 2N inferences in one process; (Ir(2N) - Ir(N)) / N removes
start-up, model loading and, for tflite-micro, the Python interpreter's fixed
overhead (Python work per invoke remains, a few thousand instructions).
Also: a mutation fuzz run of the model reader for --fuzz-seconds (ASan+UBSan).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import cmodule_build as cb  # noqa: E402

TFLM_SCRIPT = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], 'rb').read()
x = np.fromfile(sys.argv[2], dtype=np.int8)
n = int(sys.argv[3])
it = runtime.Interpreter.from_bytes(model)
shape = it.get_input_details(0)['shape']
per = int(np.prod(shape))
for i in range(n):
    it.set_input(x[i * per:(i + 1) * per].reshape(shape), 0)
    it.invoke()
    it.get_output(0)
"""


def callgrind_ir(cmd: list[str], workdir: Path) -> int:
    out = workdir / "cg.out"
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    for line in out.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError("no callgrind summary")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["ds_cnn_s", "tds_resnet"])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--fuzz-seconds", type=float, default=0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kws-bench-"))
    models = cb.zoo_models(Path(tempfile.gettempdir()) / "kws-bench-models")
    driver = cb.build_program(cb.SRC / "tools" / "kws_check.c")
    (work / "tflm.py").write_text(TFLM_SCRIPT)
    rows = []
    for name in args.models:
        tflite = models[name]
        (work / "m.tflite").write_bytes(tflite)
        x = cb.test_inputs(tflite, n_real=0, n_random=2 * args.n, seed=0)[: 2 * args.n]
        (work / "in.bin").write_bytes(x.tobytes())
        ir = {}
        for n in (args.n, 2 * args.n):
            (work / "in_n.bin").write_bytes(x[:n].tobytes())
            ir["c", n] = callgrind_ir([str(driver), "run", str(work / "m.tflite"), "400000", str(work / "in_n.bin"),
                                       str(n), str(work / "out.bin")], work)
            ir["tflm", n] = callgrind_ir([sys.executable, str(work / "tflm.py"), str(work / "m.tflite"),
                                          str(work / "in_n.bin"), str(n)], work)
        c = (ir["c", 2 * args.n] - ir["c", args.n]) / args.n
        t = (ir["tflm", 2 * args.n] - ir["tflm", args.n]) / args.n
        lib = cb.KwsLib()
        m = lib.load(tflite, 400_000)
        macs = lib.lib.kws_model_macs
        macs.argtypes = [__import__("ctypes").c_void_p]
        macs.restype = __import__("ctypes").c_uint64
        rows.append((name, macs(m.handle), c, t, c / t))
    print(f"{'model':12s} {'MACs':>10s} {'kws Ir/inf':>12s} {'tflm Ir/inf':>12s} {'ratio':>6s}")
    for name, macs_n, c, t, r in rows:
        print(f"{name:12s} {macs_n:10d} {c:12.0f} {t:12.0f} {r:6.2f}")
    if args.fuzz_seconds:
        asan = cb.build_program(cb.SRC / "tools" / "kws_check.c", sanitize=True)
        seeds = []
        for name in ("tiny_conv", "tds_resnet", "tc_resnet8", "ds_cnn_s"):
            (work / f"{name}.tflite").write_bytes(models[name])
            seeds.append(str(work / f"{name}.tflite"))
        proc = subprocess.run([str(asan), "fuzz", str(args.fuzz_seconds), "7", *seeds], capture_output=True, text=True)
        print("fuzz:", proc.returncode, proc.stdout.strip(), proc.stderr[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
