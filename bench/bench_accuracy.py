"""Accuracy benchmark on real speech, split by speaker: zoo models through the real pipeline.

    python bench/bench_accuracy.py --data ../shared/data/speech_commands --epochs 40 --out acc-bench

For each model and seed this runs exactly what a user runs: ``kws-kit data curate``
(once, shared by all runs), ``kws-kit train`` and ``kws-kit export`` (int8 with the
reference kernels), then reads the test split back (speakers never seen in training
or validation). Every model gets the same data, epoch budget, seed(s), batch size
and learning-rate schedule; early stopping is off by default (``--patience`` equal
to the epoch budget) so no model gets fewer updates than another; the checkpoint
kept is the best on the validation split, as ``kws-kit train`` does.

Printed (markdown) per model: parameters, MACs, float and int8 test accuracy with a
95 % Wilson interval, the int8-minus-float gap on the test split and over all clips of
all splits (train, validation and test: quantisation effects need no held-out data and
14x more clips measure them more tightly), how many clips int8 classifies differently
from float, and how many change when only the input is
quantised (the float model fed int8-quantised-then-dequantised features: the effect
of the input tensor's single scale), and training time (wall and CPU seconds; the
machine may be shared, so wall time is only indicative). A paired exact
McNemar test compares each model with a reference (DS-CNN-S) on the same test clips.

Speaker-grouped cross-validation (``--folds 5``): speakers are hashed into 5 groups;
fold k tests on group k, keeps the checkpoint best on group k+1 and trains on the other
three, each fold on its own dataset made by ``kws-kit data curate``'s own code with those
speaker splits. Every clip is then tested once, by a model that never heard its speaker
(~2,700 test predictions per model instead of one split's ~500). Printed: pooled float and
int8 accuracy with Wilson and speaker-bootstrap 95 % intervals, the pooled int8-float gap,
per-fold numbers, and each model against the reference on the pooled clips (exact
McNemar, the difference with a speaker-bootstrap interval, folds won and a sign test).

    taskset -c 1 python bench/bench_accuracy.py --data ../shared/data/speech_commands \
        --folds 5 --models default,ds_cnn_s,tiny_conv --out cv-bench

Re-running with the same --out reuses finished runs (and the curated datasets), so a
second seed, model or fold can be added later; ``--retrain`` forces training again.
Several processes may share one --out (e.g. one per core): each run is locked, and a
process that reaches a run another one is training waits for it and reuses it.
Validation and test features come from kws-kit's FeatureCache (computed once per clip
and front end, shared by all runs); training features are recomputed from augmented audio.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import math
import os
import pickle
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


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on ``path`` (created if needed; released when the process dies).
    Several benchmark processes can share one --out: each run (model, seed, fold) and the
    dataset curation are locked separately, and a process that finds a run locked waits,
    then reuses the finished run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {path} (another bench_accuracy.py holds it)", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
    with locked(out / "dataset.lock"):
        if (dest / "manifest.csv").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
            return dest
        curate(CurateOptions(keywords=keywords, sources=wanted["sources"], out=str(dest), seed=seed, overwrite=True))
        stamp.write_text(json.dumps(wanted, indent=1))
    return dest


def fold_of(speaker: str, folds: int) -> int:
    """The speaker's cross-validation group: a stable hash of the speaker id (the same hash
    ``kws-kit data curate --split-by speaker-hash`` uses), cut into ``folds`` equal ranges."""
    from kws_kit.data.common import unit_hash

    return min(folds - 1, int(unit_hash(speaker) * folds))


def fold_split(group: int, fold: int, folds: int) -> str:
    """Fold ``fold`` tests on group ``fold``, picks its checkpoint on group ``fold + 1`` and
    trains on the others: every speaker is tested exactly once over the folds."""
    if group == fold:
        return "test"
    return "validation" if group == (fold + 1) % folds else "train"


def curate_fold(sources: list[str], keywords: list[str], out: Path, seed: int, fold: int, folds: int) -> Path:
    """``kws-kit data curate`` with the speakers' splits set by the fold instead of the
    official lists or the 70/10/20 hash: the real curation code (class balance, _unknown_
    sampling, _silence_ and noise mixing from time-split noise files) runs unchanged on a
    scan whose clips carry the fold's splits. Noise is not speech, so the noise files keep
    curate's own time split (test noise is the last 20 % of every file in every fold)."""
    from kws_kit.data import curate as curate_mod
    from kws_kit.data.curate import CurateOptions, curate

    dest = out / "dataset" / f"fold{fold}of{folds}"
    wanted = {"keywords": keywords, "seed": seed, "sources": [str(Path(s).resolve()) for s in sources],
              "fold": fold, "folds": folds, "split": "speaker groups by unit_hash(speaker); test = group fold, "
              "validation = group fold+1, train = the rest"}
    stamp = dest / "bench_options.json"
    with locked(out / "dataset.lock"):
        if (dest / "manifest.csv").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
            return dest
        real_scan = curate_mod.scan

        def fold_scan(paths, split_by="auto", noise_dirs=()):
            result = real_scan(paths, "speaker-hash", noise_dirs)
            result.clips = [dataclasses.replace(c, split=fold_split(fold_of(c.speaker, folds), fold, folds))
                            for c in result.clips]
            return result

        curate_mod.scan = fold_scan
        try:
            curate(CurateOptions(keywords=keywords, sources=wanted["sources"], out=str(dest), seed=seed,
                                 split_by="speaker-hash", overwrite=True))
        finally:
            curate_mod.scan = real_scan
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
        augment=not args.no_augment,
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
    test_rows = [r for r in rows if r.split == "test"]
    return {
        "y": yt,
        # cluster of each test clip for the speaker-level bootstrap: the speaker, or the
        # row itself for _silence_ (noise, no speaker)
        "cluster": np.array([r.speaker or f"{data.name}/{r.id}" for r in test_rows]),
        "float_pred_test": float_pred[is_test],
        "int8_pred_test": int8_pred[is_test],
        "float_ok": float_pred[is_test] == yt,
        "int8_ok": int8_pred[is_test] == yt,
        "input_quant_ok": input_q_pred[is_test] == yt,
        "all_clips": len(rows),
        "int8_flips": int(np.sum(int8_pred != float_pred)),
        "all_clips_gap": float(np.mean(int8_pred == y) - np.mean(float_pred == y)),
        "input_quant_flips": int(np.sum(input_q_pred != float_pred)),
        "speakers": len({r.speaker for r in rows if r.split == "test" and r.speaker}),  # _silence_ has no speaker
        "input_scale": s,
        "input_zero_point": z,
        "clipped_inputs": float(np.mean((q == -128) | (q == 127))),
    }


def cached_predictions(bundle_dir: Path, run_dir: Path, data: Path, meta: dict) -> dict:
    """test_predictions, kept in the run folder for this bundle (a report over finished runs
    then needs no inference)."""
    path = run_dir / "bench_predictions.pkl"
    stamp = {"bundle_created": meta["created"], "data": str(data.resolve())}
    if path.is_file():
        try:
            saved = pickle.loads(path.read_bytes())
            if saved.get("stamp") == stamp:
                return saved["pred"]
        except Exception:
            pass  # unreadable: recompute
    pred = test_predictions(bundle_dir, run_dir, data)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps({"stamp": stamp, "pred": pred}))
    tmp.replace(path)
    return pred


def run_one(model: str, seed: int, data: Path, out: Path, args, fold: int | None = None) -> dict:
    from kws_kit.export import export

    tag = f"{model}-seed{seed}" + (f"-fold{fold}of{args.folds}" if fold is not None else "")
    run_dir, bundle_dir = out / "runs" / tag, out / "bundles" / tag
    with locked(out / "runs" / f"{tag}.lock"):
        print(f"== {tag}: training ({args.epochs} epochs)", file=sys.stderr, flush=True)
        timing, trained = train_run(model, seed, data, run_dir, args)
        if trained or not (bundle_dir / "metadata.json").is_file():
            export(run_dir, bundle_dir, overwrite=True)
        meta = json.loads((bundle_dir / "metadata.json").read_text())
        pred = cached_predictions(bundle_dir, run_dir, data, meta)
    n = len(pred["y"])
    result = {
        "model": model,
        "seed": seed,
        "fold": fold,
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
        "all_clips_gap": pred["all_clips_gap"],
        "input_quant_flips": pred["input_quant_flips"],
        "best_val_accuracy": json.loads((run_dir / "state.json").read_text())["best_val_accuracy"],
        **timing,
        "export_created": meta["created"],
        "_int8_ok": pred["int8_ok"],
        "_float_ok": pred["float_ok"],
        "_cluster": pred["cluster"],
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
        f"patience {args.patience or args.epochs}, seeds {args.seeds}"
        + (", no augmentation." if args.no_augment else ", kws-kit train's augmentation."),
        "",
        "| model | seed | params | MACs | float acc % (95% CI) | int8 acc % (95% CI) | int8 - float (pts) "
        "| int8 - float, all clips (pts) "
        "| int8 decision changes (all clips) | changes from input quantisation alone | best val acc % (epoch) "
        "| train wall s | train CPU s |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['params']:,} | {r['macs']:,} "
            f"| {pct(r['float_acc'])} ({pct(r['float_ci'][0])}-{pct(r['float_ci'][1])}) "
            f"| {pct(r['int8_acc'])} ({pct(r['int8_ci'][0])}-{pct(r['int8_ci'][1])}) "
            f"| {100 * (r['int8_acc'] - r['float_acc']):+.1f} | {100 * r['all_clips_gap']:+.2f} "
            f"| {r['int8_flips']}/{r['all_clips']} ({100 * r['int8_flips'] / r['all_clips']:.1f}%) "
            f"| {r['input_quant_flips']} ({100 * r['input_quant_flips'] / r['all_clips']:.1f}%) "
            f"| {pct(r['best_val_accuracy'])} ({r['best_epoch']}) | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |"
        )
    models = list(dict.fromkeys(r["model"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    if len(seeds) > 1:
        lines += ["", "Mean over seeds:", "", "| model | float acc % | int8 acc % | int8 - float (pts) "
                  "| int8 - float, all clips (pts) |", "|---|---:|---:|---:|---:|"]
        for m in models:
            rs = [r for r in results if r["model"] == m]
            f = np.array([r["float_acc"] for r in rs])
            q = np.array([r["int8_acc"] for r in rs])
            lines.append(f"| {m} | {pct(f.mean())} ({', '.join(pct(v) for v in f)}) "
                         f"| {pct(q.mean())} ({', '.join(pct(v) for v in q)}) | {100 * (q - f).mean():+.2f} "
                         f"| {100 * np.mean([r['all_clips_gap'] for r in rs]):+.2f} |")
    reference = args.reference if args.reference in models else models[0]
    if len(models) > 1:
        lines += ["", f"Paired exact McNemar test, int8, each model vs {reference} (same seed, same test clips):", "",
                  f"| seed | model | only the model right | only {reference} right | p |", "|---:|---|---:|---:|---:|"]
        for seed in seeds:
            ref = next((r for r in results if r["model"] == reference and r["seed"] == seed), None)
            for m in models:
                other = next((r for r in results if r["model"] == m and r["seed"] == seed), None)
                if ref is None or other is None or m == reference:
                    continue
                a, b, p = mcnemar_exact(other["_int8_ok"], ref["_int8_ok"])
                lines.append(f"| {seed} | {m} | {a} | {b} | {p:.3g} |")
    scales = sorted({(round(r["input_scale"], 6), r["input_zero_point"]) for r in results})
    clipped = ", ".join(f"{100 * r['clipped_inputs']:.2f}%" for r in results)
    lines += ["", "int8 input quantisation (scale, zero point): " + ", ".join(f"({a}, {b})" for a, b in scales)
              + f"; input values at the int8 limits, per row: {clipped}"]
    return "\n".join(lines)


def cluster_bootstrap(clusters: np.ndarray, values: list[np.ndarray], stat, n_boot: int = 4000, seed: int = 0):
    """95 % percentile interval of ``stat(*per-cluster sums, n per cluster)`` when whole
    clusters (speakers) are resampled: clips of one speaker are not independent, so this is
    wider (and more honest) than an interval that treats every clip as independent."""
    _, inverse = np.unique(clusters, return_inverse=True)
    n_clusters = inverse.max() + 1
    sums = [np.bincount(inverse, weights=v.astype(np.float64), minlength=n_clusters) for v in values]
    counts = np.bincount(inverse, minlength=n_clusters).astype(np.float64)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot).astype(np.float64)
    draws = stat(*[weights @ s for s in sums], weights @ counts)
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def pool(results: list[dict], model: str, seed: int) -> dict | None:
    """One model's test predictions over all folds, concatenated in fold order (the same
    clips in the same order for every model: each fold's dataset is curated once)."""
    rs = sorted((r for r in results if r["model"] == model and r["seed"] == seed), key=lambda r: r["fold"])
    if not rs:
        return None
    return {
        "runs": rs,
        "int8_ok": np.concatenate([r["_int8_ok"] for r in rs]),
        "float_ok": np.concatenate([r["_float_ok"] for r in rs]),
        "cluster": np.concatenate([r["_cluster"] for r in rs]),
    }


def markdown_cv(results: list[dict], args) -> str:
    """Speaker-grouped cross-validation: every clip tested once, by the fold that held its speaker out."""
    from scipy.stats import binomtest

    models = list(dict.fromkeys(r["model"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    folds = sorted({r["fold"] for r in results})
    n_speakers = sum(r["speakers"] for r in results if r["model"] == models[0] and r["seed"] == seeds[0])
    n_clips = sum(r["clips"] for r in results if r["model"] == models[0] and r["seed"] == seeds[0])
    lines = [
        f"Speaker-grouped {args.folds}-fold cross-validation (folds run: {', '.join(map(str, folds))}): speakers hashed "
        f"into {args.folds} groups; each fold trains on {args.folds - 2} groups, keeps the checkpoint best on one more "
        f"and tests on the held-out group, so every clip is tested once by a model that never heard its speaker. "
        f"Pooled test set: {n_clips} clips, {n_speakers} speakers. {args.epochs} epochs, batch {args.batch_size}, "
        f"lr {args.learning_rate} (cosine), patience {args.patience or args.epochs}, seeds {args.seeds}"
        + (", no augmentation." if args.no_augment else ", kws-kit train's augmentation."),
        "",
        "Accuracy over all pooled test clips; intervals: Wilson (clips independent) / bootstrap over speakers "
        "(whole speakers resampled; the honest one, clips of a speaker are correlated).",
        "",
        "| model | seed | params | MACs | float acc % (Wilson; speaker bootstrap) | int8 acc % (Wilson; speaker bootstrap) "
        "| int8 - float, pooled test (pts, speaker-bootstrap CI) | int8 - float, all clips of all splits, mean of folds (pts) "
        "| int8 acc % per fold | train CPU s (sum of folds) |",
        "|---|---:|---:|---:|---|---|---|---:|---|---:|",
    ]
    pooled = {}
    for seed in seeds:
        for m in models:
            p = pool(results, m, seed)
            if p is None:
                continue
            pooled[m, seed] = p
            rs, n = p["runs"], len(p["int8_ok"])
            fw, qw = wilson(int(p["float_ok"].sum()), n), wilson(int(p["int8_ok"].sum()), n)
            fb = cluster_bootstrap(p["cluster"], [p["float_ok"]], lambda c, k: c / k)
            qb = cluster_bootstrap(p["cluster"], [p["int8_ok"]], lambda c, k: c / k)
            gap = p["int8_ok"].mean() - p["float_ok"].mean()
            gb = cluster_bootstrap(p["cluster"], [p["int8_ok"], p["float_ok"]], lambda a, b, k: (a - b) / k)
            lines.append(
                f"| {m} | {seed} | {rs[0]['params']:,} | {rs[0]['macs']:,} "
                f"| {pct(p['float_ok'].mean())} ({pct(fw[0])}-{pct(fw[1])}; {pct(fb[0])}-{pct(fb[1])}) "
                f"| {pct(p['int8_ok'].mean())} ({pct(qw[0])}-{pct(qw[1])}; {pct(qb[0])}-{pct(qb[1])}) "
                f"| {100 * gap:+.2f} ({100 * gb[0]:+.2f} to {100 * gb[1]:+.2f}) "
                f"| {100 * np.mean([r['all_clips_gap'] for r in rs]):+.2f} "
                f"| {', '.join(pct(r['int8_acc']) for r in rs)} | {sum(r['cpu_s'] for r in rs):.0f} |"
            )
    reference = args.reference if args.reference in models else models[0]
    if len(models) > 1:
        lines += [
            "",
            f"Paired comparison with {reference}, int8, over the same pooled test clips: exact McNemar test "
            f"(clips treated as independent), the accuracy difference with a 95 % speaker-bootstrap interval, "
            f"and how many folds the model won (two-sided sign test over folds):",
            "",
            f"| seed | model | only the model right | only {reference} right | McNemar p "
            f"| difference (pts, speaker-bootstrap 95% CI) | folds won / lost | sign test p |",
            "|---:|---|---:|---:|---:|---|---:|---:|",
        ]
        for seed in seeds:
            ref = pooled.get((reference, seed))
            for m in models:
                p = pooled.get((m, seed))
                if ref is None or p is None or m == reference:
                    continue
                if len(p["int8_ok"]) != len(ref["int8_ok"]) or not np.array_equal(p["cluster"], ref["cluster"]):
                    continue  # not the same folds
                a, b, pv = mcnemar_exact(p["int8_ok"], ref["int8_ok"])
                diff = p["int8_ok"].mean() - ref["int8_ok"].mean()
                ci = cluster_bootstrap(p["cluster"], [p["int8_ok"], ref["int8_ok"]], lambda x, y, k: (x - y) / k)
                per_fold = [r["int8_acc"] - q["int8_acc"] for r, q in zip(p["runs"], ref["runs"])]
                won, lost = sum(d > 0 for d in per_fold), sum(d < 0 for d in per_fold)
                sign_p = binomtest(won, won + lost, 0.5).pvalue if won + lost else 1.0
                lines.append(f"| {seed} | {m} | {a} | {b} | {pv:.3g} | {100 * diff:+.1f} "
                             f"({100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}) | {won} / {lost} | {sign_p:.3g} |")
    lines += ["", "Per fold (test clips / speakers; int8 and float accuracy %; int8 decisions that differ from float over "
              "all clips of all splits):", "",
              "| model | seed | fold | test clips | test speakers | float % | int8 % | int8 - float (pts) "
              "| int8 decision changes (all clips) | best val acc % (epoch) | train CPU s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for (m, seed), p in pooled.items():
        for r in p["runs"]:
            lines.append(f"| {m} | {seed} | {r['fold']} | {r['clips']} | {r['speakers']} | {pct(r['float_acc'])} "
                         f"| {pct(r['int8_acc'])} | {100 * (r['int8_acc'] - r['float_acc']):+.1f} "
                         f"| {r['int8_flips']}/{r['all_clips']} | {pct(r['best_val_accuracy'])} ({r['best_epoch']}) "
                         f"| {r['cpu_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, action="append", help="Source folder(s) to curate (repeatable).")
    ap.add_argument("--out", required=True, type=Path, help="Work folder: dataset/, runs/, bundles/, results.*")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--models", default="default,ds_cnn_s,tiny_conv",
                    help="Comma-separated zoo names; 'default' = models.zoo.DEFAULT_MODEL; name:key=value/key=value "
                         "builds a variant with other builder arguments.")
    ap.add_argument("--reference", default="ds_cnn_s", help="Model the others are compared with (McNemar).")
    ap.add_argument("--seeds", default="0", help="Comma-separated training seeds.")
    ap.add_argument("--keywords", default=COMMAND_WORDS)
    ap.add_argument("--curate-seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=None, help="Default: kws-kit train's default.")
    ap.add_argument("--learning-rate", type=float, default=None, help="Default: kws-kit train's default.")
    ap.add_argument("--patience", type=int, default=0, help="Early-stopping patience; 0 = the epoch budget (off).")
    ap.add_argument("--no-augment", action="store_true", help="Train without augmentation (as kws-kit train --no-augment).")
    ap.add_argument("--retrain", action="store_true", help="Train and export again even if a finished run exists.")
    ap.add_argument("--folds", type=int, default=0,
                    help="Speaker-grouped k-fold cross-validation with this many speaker groups (at least 3; "
                         "0 = the one curated train/validation/test split).")
    ap.add_argument("--only-folds", default="", help="Comma-separated folds to run (default: all).")
    args = ap.parse_args()
    if args.folds and args.folds < 3:
        ap.error("--folds needs at least 3 groups (train, validation, test)")

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
    keywords = [w.strip() for w in args.keywords.split(",")]
    results = []
    if args.folds:
        folds = [int(f) for f in args.only_folds.split(",")] if args.only_folds else list(range(args.folds))
        if any(not 0 <= f < args.folds for f in folds):
            ap.error(f"--only-folds: folds are 0..{args.folds - 1}")
        datasets = {f: curate_fold(args.data, keywords, args.out, args.curate_seed, f, args.folds) for f in folds}
        for seed in seeds:
            for model in models:
                for f in folds:
                    results.append(run_one(model, seed, datasets[f], args.out, args, fold=f))
        table = markdown_cv(results, args)
    else:
        data = curate_once(args.data, keywords, args.out, args.curate_seed)
        for seed in seeds:
            for model in models:
                results.append(run_one(model, seed, data, args.out, args))
        table = markdown(results, args, data)
    header = (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"load average at end {os.getloadavg()[0]:.1f}. Default model: {zoo.DEFAULT_MODEL}.")
    print(header + "\n\n" + table)
    name = "results" + (f"_cv{args.folds}" if args.folds else "")
    (args.out / f"{name}.md").write_text(header + "\n\n" + table + "\n")
    (args.out / f"{name}.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if not k.startswith("_")} for r in results], indent=1))


if __name__ == "__main__":
    main()
