"""Honest evaluation: clip accuracy (float vs int8) and streaming false accepts per hour.

Clip level and streaming run the int8 model through the batched int8 engine
(``kws_kit.int8_batch``), which computes bit for bit what TensorFlow Lite Micro
computes on a board, many windows at once. Streaming builds a long
recording from held-out noise, unknown words and keywords at known times, runs
the device's own recogniser over it and counts false accepts per hour and missed
keywords.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic, audio_io
from .errors import DataError
from .progress import info, track, warn

# ---------------------------------------------------------------------------
# Prediction


def predict_float_keras(model, x: np.ndarray) -> np.ndarray:
    """Class probabilities from a Keras model for features (N, frames, coeffs)."""
    from .train import predict

    return predict(model, x[..., None]).astype(np.float32)


def quantize_inputs(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    from .frontend import quantize_features

    return quantize_features(x, scale, zero_point)


def predict_int8(tflite: bytes, x: np.ndarray, scale: float, zero_point: int, kernels: str = "batch") -> np.ndarray:
    """Raw int8 outputs (N, classes); ``kernels`` as in ``run_int8`` ("batch": bit-identical to TFLite Micro)."""
    from .quantize import run_int8

    q = quantize_inputs(x, scale, zero_point)[..., None]
    return np.asarray(run_int8(tflite, q, kernels=kernels)).reshape(len(x), -1)


def predict_float_tflite(path: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    from ai_edge_litert.interpreter import OpResolverType

    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = interp.get_output_details()[0]["index"]
    result = []
    for sample in x:
        interp.set_tensor(inp, sample[None, ..., None].astype(np.float32))
        interp.invoke()
        result.append(interp.get_tensor(out)[0].copy())
    return np.asarray(result, dtype=np.float32)


# ---------------------------------------------------------------------------
# Clip metrics


def clip_metrics(y_true: np.ndarray, scores: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows: truth)."""
    y_pred = np.argmax(scores, axis=1)
    n = len(labels)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class = {}
    for i, name in enumerate(labels):
        tp = cm[i, i]
        predicted = cm[:, i].sum()
        actual = cm[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(actual),
        }
    accuracy = float(np.trace(cm) / cm.sum()) if cm.sum() else 0.0
    return {"accuracy": accuracy, "per_class": per_class, "confusion": cm.tolist()}


def plot_confusion(cm: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(cm, dtype=np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    fig.tight_layout()
    with atomic.output_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Evaluation data: a curated split or any folder of speech


@dataclass
class EvalData:
    description: str
    features: np.ndarray  # (N, frames, coeffs) float32
    y: np.ndarray  # label indices into the bundle's labels
    speakers: int
    keyword_clips: list[tuple[str, np.ndarray]]  # (label, 1 s clip)
    unknown_clips: list[np.ndarray]
    noise: list[np.ndarray]


def _is_curated(path: Path) -> bool:
    return (path / "manifest.csv").is_file() and (path / "dataset.json").is_file()


def _class_for_word(word: str, labels: list[str]) -> str | None:
    if word in labels:
        return word
    if word in ("_silence_", "_background_noise_"):
        return "_silence_" if "_silence_" in labels else None
    return "_unknown_" if "_unknown_" in labels else None


def load_eval_data(data: str | os.PathLike, bundle, split: str = "test", max_clips: int | None = None) -> EvalData:
    from .frontend import Frontend

    path = Path(data)
    spec = bundle.spec()
    frontend = Frontend(spec)
    labels = bundle.labels
    if not path.exists():
        raise DataError(f"evaluation data {path} not found")
    if _is_curated(path):
        from .data.curate import load_curated
        from .train import features_for_rows

        ds = load_curated(path)
        missing = [k for k in bundle.keywords if k not in ds.labels]
        if missing:
            warn(f"{path} has no examples of {', '.join(missing)}")
        rows = [r for r in ds.rows_for(split) if _class_for_word(r.label, labels) is not None]
        if not rows:
            raise DataError(f"{path}: no {split} examples for this model's classes")
        if max_clips:
            rows = rows[:max_clips]
        feats = features_for_rows(rows, spec)
        y = np.array([labels.index(_class_for_word(r.label, labels)) for r in rows], dtype=np.int32)
        kw = [r for r in rows if r.label in bundle.keywords]
        kw_clips = [(r.label, _raw_clip(r.path, r.offset_s, r.duration_s)) for r in kw]
        unk = [r for r in rows if r.label == "_unknown_"]
        from .train import load_noise

        noise = load_noise(ds, split)
        return EvalData(
            f"{path} ({split} split)",
            feats,
            y,
            len({r.speaker for r in rows if r.speaker}),  # _silence_ rows have no speaker
            kw_clips,
            [_raw_clip(r.path, r.offset_s, r.duration_s) for r in unk],
            noise,
        )

    # Any folder of speech: every clip counts, labelled by its word folder.
    from .data.curate import scan_sources

    clips, noise_files, rejected = scan_sources([path])
    for item in rejected[:5]:
        warn(f"skipped {item}")
    usable = [c for c in clips if _class_for_word(c.word, labels) is not None]
    if not usable:
        raise DataError(f"{path}: no usable clips (expected <word>/*.wav folders)")
    if max_clips:
        usable = usable[:max_clips]
    waves, y, keep = [], [], []
    for c in track(usable, "loading clips"):
        try:
            x = _raw_clip(c.path, c.offset_s, c.duration_s)
        except Exception as exc:
            warn(f"skipped {c.path}: {exc}")
            continue
        waves.append(x)
        y.append(labels.index(_class_for_word(c.word, labels)))
        keep.append(c)
    feats = frontend.batch_features(np.stack(waves))
    noise = []
    for nf in noise_files:
        try:
            noise.append(audio_io.load(nf))
        except Exception as exc:
            warn(f"skipping noise {nf}: {exc}")
    kw = [(c.word, w) for w, c in zip(waves, keep) if c.word in bundle.keywords]
    unk = [w for w, c in zip(waves, keep) if _class_for_word(c.word, labels) == "_unknown_"]
    return EvalData(str(path), feats, np.asarray(y, dtype=np.int32), len({c.speaker for c in keep}), kw, unk, noise)


def _raw_clip(path, offset, duration) -> np.ndarray:
    x = audio_io.load(path, offset=offset or 0.0, duration=duration or None)
    return audio_io.fit_length(x, audio_io.SAMPLE_RATE)


# ---------------------------------------------------------------------------
# The command


def evaluate(
    bundle_path: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test",
    stream_minutes: float = 60.0,
    target_fa_per_hour: float = 0.5,
    seed: int = 0,
    overwrite: bool = False,
    max_clips: int | None = None,
) -> dict:
    from . import streaming
    from .bundle import load_bundle

    bundle = load_bundle(bundle_path)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"report folder {out} already exists", hint="choose another path or pass --overwrite")
    ev = load_eval_data(data, bundle, split, max_clips=max_clips)
    labels = bundle.labels
    info(f"clip evaluation on {len(ev.y)} clips from {ev.speakers} speakers")
    int8_raw = predict_int8(bundle.model_bytes, ev.features, bundle.input_scale, bundle.input_zero_point)
    int8_m = clip_metrics(ev.y, int8_raw.astype(np.float32), labels)
    report: dict = {"bundle": str(bundle.path), "data": ev.description, "clips": int(len(ev.y)), "speakers": ev.speakers}
    report["int8"] = int8_m
    fpath = bundle.float_model_path()
    if fpath is not None:
        report["float"] = clip_metrics(ev.y, predict_float_tflite(fpath, ev.features), labels)

    with atomic.output_dir(out, overwrite=True, what="report folder") as tmp:
        plot_confusion(int8_m["confusion"], labels, tmp / "confusion.png", f"int8 confusion, {ev.description}")
        if stream_minutes > 0 and ev.keyword_clips:
            report["stream"] = _stream_eval(bundle, ev, stream_minutes, target_fa_per_hour, seed, tmp)
        elif stream_minutes > 0:
            warn("no keyword clips in the evaluation data: skipping the streaming evaluation")
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        (tmp / "report.md").write_text(report_markdown(report, labels))
    _print_summary(report)
    return report


def int8_scorer(bundle, kernels: str = "batch"):
    """Scores 0..255 per class for batches of float features, through the int8 model."""
    from .quantize import Int8Runner

    zp_out = int(bundle.metadata["output"]["zero_point"])
    scale, zp = bundle.input_scale, bundle.input_zero_point
    runner = Int8Runner(bundle.model_bytes, kernels=kernels)  # prepared once for the whole stream

    def score(batch: np.ndarray) -> np.ndarray:
        q = quantize_inputs(batch, scale, zp)[..., None]
        raw = np.asarray(runner(q)).reshape(len(batch), -1).astype(np.int32)
        return np.clip(raw - zp_out, 0, 255).astype(np.uint8)

    return score


def _stream_eval(bundle, ev: EvalData, minutes: float, target: float, seed: int, out_dir: Path) -> dict:
    from . import streaming
    from .frontend import Frontend

    noise = ev.noise
    if not noise:
        warn("no held-out background noise: building the stream over synthetic pink noise")
        from .data.synth import generated_noise

        noise = [generated_noise("pink", 120.0, seed)]
    keyword_clips: dict[str, list[np.ndarray]] = {}
    for label, clip in ev.keyword_clips:
        keyword_clips.setdefault(label, []).append(clip)
    info(f"building a {minutes:g}-minute test stream")
    stream = streaming.build_stream(
        keyword_clips,
        ev.unknown_clips,
        noise,
        duration_s=minutes * 60.0,
        seed=seed,
        noise_dbfs=speech_level_dbfs([c for _, c in ev.keyword_clips]) - STREAM_MEAN_SNR_DB,
    )
    frontend = Frontend(bundle.spec())
    rec = bundle.recognizer
    info("scoring the stream with the int8 model")
    track_ = streaming.score_stream(
        frontend.stream_features, int8_scorer(bundle), stream, inference_period_ms=int(rec["inference_period_ms"])
    )
    params = recognizer_params(rec)
    result = streaming.evaluate(track_, stream, bundle.labels, params)
    thresholds = [round(float(t), 3) for t in np.linspace(0.3, 0.99, 24)]
    sweep = streaming.sweep_thresholds(track_, stream.events, bundle.labels, params, thresholds)
    streaming.plot_det(sweep, out_dir / "det.png", target_fa_per_hour=target)
    chosen = streaming.threshold_for_target(sweep, target)
    return {
        "duration_hours": stream.duration_s / 3600.0,
        "threshold": params["detection_threshold"],
        **result.to_dict(),
        "target_fa_per_hour": target,
        "threshold_for_target": None if chosen is None else chosen.threshold,
        "sweep": [list(map(float, p)) for p in sweep],
    }


# Words in the stream keep about their recorded loudness (the front end has no gain
# normalisation, so a stream much quieter than the training clips would test a level
# mismatch, not the model); the background sits this far below the median word.
STREAM_MEAN_SNR_DB = 12.5


def speech_level_dbfs(clips: list[np.ndarray]) -> float:
    """Median RMS level of the active part (within 30 dB of the peak frame) of the clips."""
    from . import streaming

    levels = []
    for clip in clips:
        active = streaming._trim_active(np.asarray(clip, dtype=np.float32), audio_io.SAMPLE_RATE, 30.0)
        if active is not None:
            levels.append(20.0 * np.log10(max(streaming._rms(active), 1e-9)))
    return float(np.median(levels)) if levels else -30.0


def recognizer_params(rec: dict) -> dict:
    """The Recognizer's keyword arguments out of a bundle's recognizer.json."""
    keys = ("average_window_ms", "detection_threshold", "suppression_ms", "minimum_count", "ignore_labels")
    return {k: rec[k] for k in keys if k in rec}


def report_markdown(report: dict, labels: list[str]) -> str:
    lines = [f"# Evaluation of {report['bundle']}", "", f"Data: {report['data']}: {report['clips']} clips, {report['speakers']} speakers.", ""]
    lines += ["| | accuracy |", "|---|---|"]
    if "float" in report:
        lines.append(f"| float | {report['float']['accuracy']:.4f} |")
    lines.append(f"| int8 (TFLite Micro arithmetic) | {report['int8']['accuracy']:.4f} |")
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name in labels:
        m = report["int8"]["per_class"][name]
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    if "stream" in report:
        s = report["stream"]
        lines += [
            "",
            "## Streaming",
            "",
            f"{s['duration_hours']:.2f} h stream with {s['events']} keywords: at threshold {s['threshold']}, "
            f"{s['false_accepts_per_hour']:.2f} false accepts per hour, false-reject rate {s['false_reject_rate']:.3f}.",
            f"Threshold for <= {s['target_fa_per_hour']} FA/h: {s['threshold_for_target']}.",
            "",
            "![DET curve](det.png)",
        ]
    lines += ["", "![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)


def _print_summary(report: dict) -> None:
    parts = [f"int8 accuracy {report['int8']['accuracy']:.4f}"]
    if "float" in report:
        parts.insert(0, f"float accuracy {report['float']['accuracy']:.4f}")
    if "stream" in report:
        s = report["stream"]
        parts.append(f"{s['false_accepts_per_hour']:.2f} FA/h, FRR {s['false_reject_rate']:.3f} at threshold {s['threshold']}")
    info("; ".join(parts))
