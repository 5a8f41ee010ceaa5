"""`kws-kit demo`: the whole pipeline on synthetic speech, no download, no hardware.

synthesise words with espeak-ng -> curate a speaker-disjoint dataset -> train a
small model -> export int8 -> evaluate (clips and a long stream) and show what
the board's recogniser would have reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import atomic
from .errors import KwsError
from .progress import console

MARKER = "kws-demo.json"
BOARD = "nucleo_l476rg"
UNKNOWN_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "cat", "dog", "bird", "house", "tree", "one", "two", "three"]


def _step(number: int, total: int, text: str) -> float:
    console.rule(f"[bold]step {number}/{total}: {text}")
    return time.perf_counter()


def _done(t0: float, text: str) -> None:
    console.print(f"[green]done[/green] in {time.perf_counter() - t0:.1f} s: {text}")


def run_demo(out: Path, keywords: list[str], *, clips_per_word: int, epochs: int, model: str, stream_minutes: float, seed: int) -> dict:
    from .data.curate import CurateOptions, curate
    from .data.synth import synthesize
    from .evaluate import evaluate
    from .export import export
    from .models import zoo
    from .train import TrainConfig, train

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise KwsError(f"{out} exists and is not a kws-kit demo folder", hint="pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / MARKER, json.dumps({"keywords": keywords, "seed": seed}))
    unknown = [w for w in UNKNOWN_WORDS if w not in keywords]
    model = zoo.DEFAULT_MODEL if model == "default" else model
    total, started = 6, time.perf_counter()

    t0 = _step(1, total, f"synthesise {', '.join(keywords)} and {len(unknown)} other words with espeak-ng")
    synth_dir = out / "synth"
    synthesize(keywords, clips_per_word, synth_dir, seed=seed)
    synthesize(unknown, max(4, clips_per_word // 4), synth_dir, seed=seed)
    _done(t0, f"speech cached in {synth_dir} (re-runs reuse it)")

    t0 = _step(2, total, "curate a speaker-disjoint dataset with background noise")
    curated = curate(CurateOptions(keywords=keywords, sources=[str(synth_dir)], out=str(out / "curated"), seed=seed, overwrite=True))
    _done(t0, f"dataset in {curated} (see report.md there)")

    t0 = _step(3, total, f"train the {model} model for up to {epochs} epochs")
    # Small batches: a few hundred clips still give enough optimiser steps per epoch.
    cfg = TrainConfig(data=str(curated), model=model, epochs=epochs, batch_size=16, seed=seed, patience=max(3, epochs // 2))
    state = train(cfg, out / "run", overwrite=True)
    _done(t0, f"best validation accuracy {state['best_val_accuracy']:.3f}; curves in {out / 'run' / 'curves.png'}")

    t0 = _step(4, total, "quantise to int8 TFLite and write the model bundle")
    bundle = export(out / "run", out / "bundle", overwrite=True, representative=200)
    meta = json.loads((bundle / "metadata.json").read_text())
    _done(t0, f"{bundle}: {meta['sizes']['tflite_bytes']} bytes, arena ~{meta['sizes']['arena_bytes']} bytes")

    t0 = _step(5, total, f"evaluate: clip accuracy and a {stream_minutes:g}-minute stream through the device recogniser")
    report = evaluate(bundle, curated, out / "eval", stream_minutes=stream_minutes, seed=seed, overwrite=True)
    _done(t0, f"report in {out / 'eval' / 'report.md'} (confusion.png, det.png)")

    t0 = _step(6, total, "simulate a Nucleo-L476RG running the board code on a 1-minute recording")
    board = simulate_board(bundle, curated, out / "board_test.wav", seed)
    _done(t0, f"{len(board['detections'])} detections for {board['events']} keywords spoken; see {out / 'board_test.wav'}")

    summary = {
        "keywords": keywords,
        "model": model,
        "bundle": str(bundle),
        "float_accuracy": meta["accuracy"]["float"],
        "int8_accuracy": meta["accuracy"]["int8"],
        "test_clips": meta["accuracy"]["clips"],
        "tflite_bytes": meta["sizes"]["tflite_bytes"],
        "arena_bytes": meta["sizes"]["arena_bytes"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    if "stream" in report:
        s = report["stream"]
        summary.update(
            false_accepts_per_hour=s["false_accepts_per_hour"],
            false_reject_rate=s["false_reject_rate"],
            threshold_for_target=s["threshold_for_target"],
        )
    summary["board_simulation"] = board
    atomic.write_text(out / "summary.json", json.dumps(summary, indent=2))
    console.rule("[bold]summary")
    console.print(
        f"int8 model for {', '.join(keywords)}: test accuracy {summary['int8_accuracy']:.3f} "
        f"(float {summary['float_accuracy']:.3f}) on {summary['test_clips']} clips of unseen synthetic voices; "
        f"{summary['tflite_bytes']} bytes of flash, ~{summary['arena_bytes']} bytes of arena."
    )
    if "false_accepts_per_hour" in summary:
        console.print(
            f"streaming: {summary['false_accepts_per_hour']:.2f} false accepts per hour, "
            f"{100 * summary['false_reject_rate']:.1f}% of keywords missed at the default threshold."
        )
    console.print(f"everything is in {out}; next: `kws-kit eval {bundle} --data <your recordings>`")
    return summary


def simulate_board(bundle: Path, curated: Path, wav_path: Path, seed: int) -> dict:
    """Build a 1-minute stream from held-out test voices and run the board's loop on it."""
    from .bundle import load_bundle
    from .evaluate import STREAM_MEAN_SNR_DB, load_eval_data, speech_level_dbfs
    from .simulate import simulate
    from .streaming import build_stream

    b = load_bundle(bundle)
    ev = load_eval_data(curated, b)
    keyword_clips: dict[str, list] = {}
    for label, clip in ev.keyword_clips:
        keyword_clips.setdefault(label, []).append(clip)
    level = speech_level_dbfs([c for _, c in ev.keyword_clips])
    stream = build_stream(
        keyword_clips, ev.unknown_clips, ev.noise or None, duration_s=60.0, seed=seed + 1,
        noise_dbfs=level - STREAM_MEAN_SNR_DB,
    )
    stream.save_wav(wav_path)
    result = simulate(bundle, wav_path, BOARD, on_line=None)
    truth = ", ".join(f"{e.label}@{e.start_s:.1f}s" for e in stream.events)
    heard = ", ".join(f"{d['label']}@{d['t_ms'] / 1000:.1f}s" for d in result.detections) or "nothing"
    console.print(f"spoken: {truth}")
    console.print(f"board heard: {heard}")
    heap = result.heap
    console.print(
        f"per 20 ms hop: front end {result.fe_us_per_frame['mean']:.0f} us, inference {result.infer_us['mean']:.0f} us "
        f"(host CPU); estimated heap on the {BOARD}: {heap.get('total_bytes', 0) / 1024:.1f} KB "
        f"of a {heap.get('heap_budget_bytes', 0) / 1024:.0f} KB budget"
    )
    return {
        "board": BOARD,
        "events": len(stream.events),
        "detections": result.detections,
        "heap": heap,
    }
