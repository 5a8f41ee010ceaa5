"""Export: a training run -> an int8 TFLite model bundle (see :mod:`kws_kit.bundle`)."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np

from . import __version__, atomic
from .bundle import BUNDLE_FORMAT, DEFAULT_RECOGNIZER
from .errors import DataError, ModelError
from .progress import info


def float_tflite(model) -> bytes:
    """Float32 TFLite of a Keras model, for host-side float-vs-int8 comparisons."""
    from .quantize import with_batch_size_one
    from .tfenv import quiet

    quiet()
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(with_batch_size_one(model))
    return converter.convert()


# Fewer examples than this calibrate activation ranges from too little data to trust.
MIN_REPRESENTATIVE = 50


def representative_rows(rows, count: int, seed: int):
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(rows), size=min(count, len(rows)), replace=False))
    return [rows[i] for i in idx]


def export(run_dir: str | os.PathLike, out: str | os.PathLike, *, representative: int = 400, overwrite: bool = False) -> Path:
    from .data.curate import load_curated
    from .evaluate import clip_metrics, predict_float_keras, predict_int8
    from .frontend import FrontendSpec, spec_to_bundle_json
    from .quantize import to_int8_tflite
    from .tflite_info import inspect_tflite
    from .train import features_for_rows, label_indices, load_checkpoint, read_run

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    cfg = run["config"]
    spec = FrontendSpec.from_dict(cfg["spec"])
    if spec.fingerprint() != run.get("frontend_fingerprint"):
        raise ModelError(f"{run_dir}: run.json front end does not match its fingerprint (edited by hand?)")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ModelError(f"bundle folder {out} already exists", hint="choose another path or pass --overwrite")
    model = load_checkpoint(run_dir / "best.keras")
    if not Path(cfg["data"]).exists():
        raise DataError(f"the run's dataset {cfg['data']} is gone; export needs it for the representative set")
    ds = load_curated(cfg["data"])
    labels = run["labels"]

    info("computing the representative set for int8 calibration")
    rep_rows = representative_rows(ds.rows_for("train"), representative, cfg["seed"])
    rep = features_for_rows(rep_rows, spec)
    info(f"quantising to int8 with {len(rep)} representative examples")
    from .tfenv import silenced

    with silenced():
        tflite = to_int8_tflite(model, rep, min_samples=MIN_REPRESENTATIVE)
        float_bytes = float_tflite(model)
    tinfo = inspect_tflite(tflite)

    test_rows = ds.rows_for("test") or ds.rows_for("validation")
    split = "test" if ds.rows_for("test") else "validation"
    x_test = features_for_rows(test_rows, spec)
    y_test = label_indices(test_rows, labels)
    float_pred = predict_float_keras(model, x_test)
    int8_pred = predict_int8(tflite, x_test, tinfo.input_scale, tinfo.input_zero_point)
    float_m = clip_metrics(y_test, float_pred, labels)
    int8_m = clip_metrics(y_test, int8_pred, labels)
    params = int(model.count_params())

    metadata = {
        "format": BUNDLE_FORMAT,
        "kws_kit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": cfg["model"],
        "labels": labels,
        "input": {"shape": list(tinfo.input_shape), "scale": tinfo.input_scale, "zero_point": tinfo.input_zero_point},
        "output": {"shape": list(tinfo.output_shape), "scale": tinfo.output_scale, "zero_point": tinfo.output_zero_point},
        "sizes": {
            "tflite_bytes": len(tflite),
            "params": params,
            "macs": int(tinfo.macs),
            "arena_bytes": int(tinfo.arena_bytes),
        },
        "ops": sorted(set(tinfo.op_names)),
        "frontend_fingerprint": spec.fingerprint(),
        "dataset": {"path": str(Path(cfg["data"]).resolve()), "manifest_sha256": run.get("manifest_sha256")},
        "accuracy": {
            "split": split,
            "clips": int(len(y_test)),
            "speakers": len({r.speaker for r in test_rows if r.speaker}),  # _silence_ rows have no speaker
            "float": float_m["accuracy"],
            "int8": int8_m["accuracy"],
        },
        "training": {
            "epochs": _best_epoch(run_dir),
            "seed": cfg["seed"],
        },
    }
    recognizer = dict(DEFAULT_RECOGNIZER)
    with atomic.output_dir(out, overwrite=overwrite, what="bundle folder") as tmp:
        (tmp / "model.tflite").write_bytes(tflite)
        (tmp / "float_model.tflite").write_bytes(float_bytes)
        (tmp / "labels.txt").write_text("\n".join(labels) + "\n")
        (tmp / "frontend.json").write_text(json.dumps(spec_to_bundle_json(spec), indent=1))
        (tmp / "recognizer.json").write_text(json.dumps(recognizer, indent=2))
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2))
        (tmp / "MODEL_CARD.md").write_text(model_card(metadata, recognizer, float_m, int8_m))
    info(
        f"bundle {out}: {len(tflite)} bytes int8, arena ~{tinfo.arena_bytes} bytes; "
        f"{split} accuracy float {float_m['accuracy']:.3f} / int8 {int8_m['accuracy']:.3f} on {len(y_test)} clips"
    )
    return out


def _best_epoch(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / "state.json").read_text())["best_epoch"])
    except (OSError, ValueError, KeyError):
        return None


def model_card(meta: dict, recognizer: dict, float_m: dict, int8_m: dict) -> str:
    acc = meta["accuracy"]
    sizes = meta["sizes"]
    lines = [
        f"# Model card: {meta['model']} ({', '.join(meta['labels'])})",
        "",
        f"Exported by kws-kit {meta['kws_kit_version']} on {meta['created']}.",
        "",
        "## What it does",
        "",
        "Classifies one second of 16 kHz audio, given as a 49 x "
        f"{meta['input']['shape'][2]} int8 feature map from the front end in `frontend.json`, into: "
        + ", ".join(f"`{label}`" for label in meta["labels"])
        + ". The recogniser (`recognizer.json`) turns the stream of scores into detections.",
        "",
        "## Measured accuracy",
        "",
        f"On the {acc['split']} split of the dataset it was trained from: {acc['clips']} clips from "
        f"{acc['speakers']} speakers, none of whom were in the training or validation splits.",
        "",
        "| | float | int8 |",
        "|---|---|---|",
        f"| clip accuracy | {float_m['accuracy']:.4f} | {int8_m['accuracy']:.4f} |",
        "",
        "Per class (int8): precision / recall / F1",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, m in int8_m["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines += [
        "",
        "## Size",
        "",
        f"- int8 TFLite: {sizes['tflite_bytes']} bytes; parameters: {sizes['params']}; MACs per inference: {sizes['macs']}",
        f"- tensor arena estimate: {sizes['arena_bytes']} bytes",
        f"- ops: {', '.join(meta['ops'])}",
        "",
        "## Recogniser defaults",
        "",
        "```json",
        json.dumps(recognizer, indent=2),
        "```",
        "",
        "Run `kws-kit eval` on held-out audio for false accepts per hour and a threshold for your target.",
        "",
        "## Limits",
        "",
        "- Trained on the dataset recorded in `metadata.json`; accents, microphones and rooms it never heard will do worse.",
        "- Clip accuracy is not what a user feels: check false accepts per hour with `kws-kit eval` before deploying.",
        "",
    ]
    return "\n".join(lines)
