"""Accuracy benchmark on real speech, split by speaker: zoo models through the real pipeline.

    python bench/bench_accuracy.py --data /work/shared/data/speech_commands --epochs 40 --out /tmp/acc

For each model and seed this runs exactly what a user runs: ``kws-kit data curate``
(once, shared by all runs), ``kws-kit train`` and ``kws-kit export`` (int8 with the
reference kernels), then reads the test split back (speakers never seen in training
or validation). Every model gets the same data, epoch budget, seed(s), batch size
and learning-rate schedule; early stopping is off by default (``--patience`` equal
to the epoch budget) so no model gets fewer updates than another; the checkpoint
kept is the best on the validation split, as ``kws-kit train`` does.

Printed (markdown) per model: parameters, MACs, float and int8 test accuracy with a
95 % Wilson interval, the int8-minus-float gap, how many clips (of all splits) int8
classifies differently from float, and how many change when only the input is
quantised (the float model fed int8-quantised-then-dequantised features: the effect
of the input tensor's single scale), and training time (wall and CPU seconds; the
machine may be shared, so wall time is only indicative). A paired exact
McNemar test compares the first model with each other one on the same test clips.

Re-running with the same --out reuses finished runs (and the curated dataset), so a
second seed or model can be added later; ``--retrain`` forces training again.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

COMMAND_WORDS = "yes,no,up,down,left,right,on,off,stop,go"


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(a_right: np.ndarray, b_right: np.ndarray) -> tuple[int, int, float]:
    """Discordant counts (only A right, only B right) and the two-sided exact p-value."""
    from scipy.stats import binomtest

    only_a = int(np.sum(a_right & ~b_right))
    only_b = int(np.sum(~a_right & b_right))
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def cpu_seconds() -> float:
    """User + system CPU of this process and all its threads (TF's included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def lock_out_dir(out: Path) -> None:
    """Refuse to share --out with another running benchmark (both would write the same runs)."""
    lock = out / "bench.lock"
    if lock.is_file():
        try:
            os.kill(int(lock.read_text().strip()), 0)
        except (ValueError, ProcessLookupError):
            lock.unlink()  # left by a benchmark that is no longer running
        except PermissionError:
            pass
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        sys.exit(f"{out} is in use by another bench_accuracy.py (pid {lock.read_text().strip()})")
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    atexit.register(lambda: lock.unlink(missing_ok=True))


def parse_model_spec(spec: str) -> str:
    """``name`` or ``name:key=value/key=value`` (a zoo builder with other arguments, e.g.
    ``tds_resnet:channels=32/dilations=1-2-4-8-1-2``). A variant is registered in the zoo
    of this process only, under a file-safe name, so train/export treat it like any model."""
    import functools

    from kws_kit.models import zoo

    name, _, arg_text = spec.partition(":")
    name = zoo.DEFAULT_MODEL if name == "default" else name
    if not arg_text:
        return name
    kwargs = {}
    for item in arg_text.split("/"):
        key, _, value = item.partition("=")
        if "-" in value:
            kwargs[key] = tuple(int(v) for v in value.split("-"))
        else:
            try:
                kwargs[key] = int(value)
            except ValueError:
                kwargs[key] = float(value)
    entry = zoo.get_entry(name)
    variant = name + "_" + "_".join(f"{k}{v.replace('-', '.')}" for k, v in (i.split("=") for i in arg_text.split("/")))
    zoo.ZOO[variant] = zoo.ModelEntry(variant, f"{entry.description} [{arg_text}]",
                                      functools.partial(entry.builder, **kwargs), entry.rank)
    return variant


# ---------------------------------------------------------------------------
# Pipeline steps


def curate_once(sources: list[str], keywords: list[str], out: Path, seed: int) -> Path:
    from kws_kit.data.curate import CurateOptions, curate

    dest = out / "dataset"
    wanted = {"keywords": keywords, "seed": seed, "sources": [str(Path(s).resolve()) for s in sources]}
    stamp = dest / "bench_options.json"
    if (dest / "manifest.csv").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return dest
    curate(CurateOptions(keywords=keywords, sources=wanted["sources"], out=str(dest), seed=seed, overwrite=True))
    stamp.write_text(json.dumps(wanted, indent=1))
    return dest


def train_run(model: str, seed: int, data: Path, run_dir: Path, args) -> tuple[dict, bool]:
    """Train (or reuse a finished run); returns wall/CPU seconds of the training call and
    whether it trained now."""
    from kws_kit.train import TrainConfig, train

    timing_path = run_dir / "bench_timing.json"
    state_path = run_dir / "state.json"
    if not args.retrain and timing_path.is_file() and state_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("done"):
            return json.loads(timing_path.read_text()), False
    cfg = TrainConfig(
        data=str(data.resolve()),
        model=model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience or args.epochs,
        seed=seed,
    )
    import keras

    keras.backend.clear_session()
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    state = train(cfg, run_dir, overwrite=True)
    timing = {
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": cpu_seconds() - cpu0,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
    }
    timing_path.write_text(json.dumps(timing, indent=1))
    return timing, True


def test_predictions(bundle_dir: Path, run_dir: Path, data: Path) -> dict:
    """Per-clip correctness on the test split for float Keras, int8 (reference kernels) and
    the float TFLite model fed int8-quantised-then-dequantised features; plus how often int8
    (and input quantisation alone) changes the float model's decision, over every clip of
    every split (the effect of quantisation needs no held-out data, and 14x more clips
    measure it more tightly than the test split's accuracy difference can)."""
    from kws_kit.bundle import load_bundle
    from kws_kit.data.curate import load_curated
    from kws_kit.evaluate import predict_float_keras, predict_float_tflite, predict_int8
    from kws_kit.frontend import quantize_features
    from kws_kit.train import features_for_rows, label_indices, load_checkpoint

    bundle = load_bundle(bundle_dir)
    ds = load_curated(data)
    rows = ds.rows_for("train") + ds.rows_for("validation") + ds.rows_for("test")
    is_test = np.array([r.split == "test" for r in rows])
    x = features_for_rows(rows, bundle.spec())
    y = label_indices(rows, bundle.labels)
    s, z = bundle.input_scale, bundle.input_zero_point
    model = load_checkpoint(run_dir / "best.keras")
    keras_p = predict_float_keras(model, x)
    float_pred = np.argmax(keras_p, axis=1)
    # The bundle must hold this checkpoint: its float TFLite has to agree with Keras.
    drift = float(np.abs(predict_float_tflite(bundle.float_model_path(), x[is_test]) - keras_p[is_test]).max())
    if drift > 1e-3:
        raise SystemExit(f"{bundle_dir}: float_model.tflite differs from {run_dir}/best.keras by {drift:.3g}")
    int8_pred = np.argmax(predict_int8(bundle.model_bytes, x, s, z), axis=1)
    q = quantize_features(x, s, z)
    dequantised = ((q.astype(np.float32) - z) * s).astype(np.float32)
    input_q_pred = np.argmax(predict_float_tflite(bundle.float_model_path(), dequantised), axis=1)
    yt = y[is_test]
    return {
        "y": yt,
        "float_ok": float_pred[is_test] == yt,
        "int8_ok": int8_pred[is_test] == yt,
        "input_quant_ok": input_q_pred[is_test] == yt,
        "all_clips": len(rows),
        "int8_flips": int(np.sum(int8_pred != float_pred)),
        "input_quant_flips": int(np.sum(input_q_pred != float_pred)),
        "speakers": len({r.speaker for r in rows if r.split == "test" and r.speaker}),  # _silence_ has no speaker
        "input_scale": s,
        "input_zero_point": z,
        "clipped_inputs": float(np.mean((q == -128) | (q == 127))),
    }


def run_one(model: str, seed: int, data: Path, out: Path, args) -> dict:
    from kws_kit.export import export

    tag = f"{model}-seed{seed}"
    run_dir, bundle_dir = out / "runs" / tag, out / "bundles" / tag
    print(f"== {tag}: training ({args.epochs} epochs)", file=sys.stderr, flush=True)
    timing, trained = train_run(model, seed, data, run_dir, args)
    if trained or not (bundle_dir / "metadata.json").is_file():
        export(run_dir, bundle_dir, overwrite=True)
    meta = json.loads((bundle_dir / "metadata.json").read_text())
    pred = test_predictions(bundle_dir, run_dir, data)
    n = len(pred["y"])
    result = {
        "model": model,
        "seed": seed,
        "params": meta["sizes"]["params"],
        "macs": meta["sizes"]["macs"],
        "tflite_bytes": meta["sizes"]["tflite_bytes"],
        "arena_bytes": meta["sizes"]["arena_bytes"],
        "clips": n,
        "speakers": pred["speakers"],
        "float_acc": float(pred["float_ok"].mean()),
        "int8_acc": float(pred["int8_ok"].mean()),
        "input_quant_acc": float(pred["input_quant_ok"].mean()),
        "float_ci": wilson(int(pred["float_ok"].sum()), n),
        "int8_ci": wilson(int(pred["int8_ok"].sum()), n),
        "export_float_acc": meta["accuracy"]["float"],
        "export_int8_acc": meta["accuracy"]["int8"],
        "input_scale": pred["input_scale"],
        "input_zero_point": pred["input_zero_point"],
        "clipped_inputs": pred["clipped_inputs"],
        "all_clips": pred["all_clips"],
        "int8_flips": pred["int8_flips"],
        "input_quant_flips": pred["input_quant_flips"],
        "best_val_accuracy": json.loads((run_dir / "state.json").read_text())["best_val_accuracy"],
        **timing,
        "export_created": meta["created"],
        "_int8_ok": pred["int8_ok"],
        "_float_ok": pred["float_ok"],
    }
    return result


# ---------------------------------------------------------------------------
# Report


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def markdown(results: list[dict], args, data: Path) -> str:
    lines = [
        f"Test split: {results[0]['clips']} clips from {results[0]['speakers']} speakers never seen in training; "
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.learning_rate} (cosine), "
        f"patience {args.patience or args.epochs}, seeds {args.seeds}.",
        "",
        "| model | seed | params | MACs | float acc % (95% CI) | int8 acc % (95% CI) | int8 - float (pts) "
        "| int8 decision changes (all clips) | changes from input quantisation alone | best val acc % (epoch) "
        "| train wall s | train CPU s |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['params']:,} | {r['macs']:,} "
            f"| {pct(r['float_acc'])} ({pct(r['float_ci'][0])}-{pct(r['float_ci'][1])}) "
            f"| {pct(r['int8_acc'])} ({pct(r['int8_ci'][0])}-{pct(r['int8_ci'][1])}) "
            f"| {100 * (r['int8_acc'] - r['float_acc']):+.1f} "
            f"| {r['int8_flips']}/{r['all_clips']} ({100 * r['int8_flips'] / r['all_clips']:.1f}%) "
            f"| {r['input_quant_flips']} ({100 * r['input_quant_flips'] / r['all_clips']:.1f}%) "
            f"| {pct(r['best_val_accuracy'])} ({r['best_epoch']}) | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |"
        )
    models = list(dict.fromkeys(r["model"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    if len(seeds) > 1:
        lines += ["", "Mean over seeds:", "", "| model | float acc % | int8 acc % | int8 - float (pts) |", "|---|---:|---:|---:|"]
        for m in models:
            rs = [r for r in results if r["model"] == m]
            f = np.array([r["float_acc"] for r in rs])
            q = np.array([r["int8_acc"] for r in rs])
            lines.append(f"| {m} | {pct(f.mean())} ({', '.join(pct(v) for v in f)}) "
                         f"| {pct(q.mean())} ({', '.join(pct(v) for v in q)}) | {100 * (q - f).mean():+.2f} |")
    if len(models) > 1:
        lines += ["", f"Paired exact McNemar test, int8, {models[0]} vs each other model (same seed, same test clips):", "",
                  f"| seed | other model | only {models[0]} right | only other right | p |", "|---:|---|---:|---:|---:|"]
        for seed in seeds:
            ref = next((r for r in results if r["model"] == models[0] and r["seed"] == seed), None)
            for m in models[1:]:
                other = next((r for r in results if r["model"] == m and r["seed"] == seed), None)
                if ref is None or other is None:
                    continue
                a, b, p = mcnemar_exact(ref["_int8_ok"], other["_int8_ok"])
                lines.append(f"| {seed} | {m} | {a} | {b} | {p:.3g} |")
    scales = sorted({(round(r["input_scale"], 6), r["input_zero_point"]) for r in results})
    clipped = ", ".join(f"{100 * r['clipped_inputs']:.2f}%" for r in results)
    lines += ["", "int8 input quantisation (scale, zero point): " + ", ".join(f"({a}, {b})" for a, b in scales)
              + f"; input values at the int8 limits, per row: {clipped}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, action="append", help="Source folder(s) to curate (repeatable).")
    ap.add_argument("--out", required=True, type=Path, help="Work folder: dataset/, runs/, bundles/, results.*")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--models", default="default,ds_cnn_s,tiny_conv",
                    help="Comma-separated zoo names; 'default' = models.zoo.DEFAULT_MODEL; name:key=value/key=value "
                         "builds a variant with other builder arguments. The first is compared with the others.")
    ap.add_argument("--seeds", default="0", help="Comma-separated training seeds.")
    ap.add_argument("--keywords", default=COMMAND_WORDS)
    ap.add_argument("--curate-seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=None, help="Default: kws-kit train's default.")
    ap.add_argument("--learning-rate", type=float, default=None, help="Default: kws-kit train's default.")
    ap.add_argument("--patience", type=int, default=0, help="Early-stopping patience; 0 = the epoch budget (off).")
    ap.add_argument("--retrain", action="store_true", help="Train and export again even if a finished run exists.")
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from kws_kit.tfenv import quiet

    quiet()  # before TensorFlow loads: the same settings as `kws-kit train` (oneDNN off, deterministic sums)
    from kws_kit.models import zoo
    from kws_kit.train import TrainConfig

    defaults = TrainConfig(data="", model="")
    args.batch_size = args.batch_size or defaults.batch_size
    args.learning_rate = args.learning_rate or defaults.learning_rate

    models = [parse_model_spec(m.strip()) for m in args.models.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    lock_out_dir(args.out)
    data = curate_once(args.data, [w.strip() for w in args.keywords.split(",")], args.out, args.curate_seed)

    results = []
    for seed in seeds:
        for model in models:
            results.append(run_one(model, seed, data, args.out, args))
    table = markdown(results, args, data)
    header = (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"load average at end {os.getloadavg()[0]:.1f}. Default model: {zoo.DEFAULT_MODEL}.")
    print(header + "\n\n" + table)
    (args.out / "results.md").write_text(header + "\n\n" + table + "\n")
    (args.out / "results.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if not k.startswith("_")} for r in results], indent=1))


if __name__ == "__main__":
    main()
