"""Quick accuracy comparison of zoo models on the real Speech Commands subset.

Indicative only: the small shared subset (~2,800 clips, 155 speakers), one
speaker-disjoint split and a short training run with simple augmentation
(time shift, background noise). Features come from kws-kit's own front end
(``--frontend kws``, raw MFCCs as the boards compute them, no normalisation) or
a librosa stand-in with per-coefficient standardisation (``--frontend librosa``).
Reports float and int8 (reference kernels) test accuracy per model and seed.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/zoo_accuracy.py --models tds_resnet,ds_cnn_s --seeds 0,1

A model spec may override builder arguments of ``tds_resnet``/``tc_resnet8``:
``tds_resnet:channels=32,dilations=1-2-4-8-1-2``.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import numpy as np

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
LABELS = ["_silence_", "_unknown_"] + WORDS
SR = 16000


def default_data_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "shared/data/speech_commands"


def load_clips(root: Path):
    import soundfile as sf

    clips, labels, groups = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_docs", "_background", "splits"))):
        label = folder.name if folder.name in WORDS else ("_silence_" if folder.name == "_silence_" else "_unknown_")
        for wav in sorted(folder.glob("*.wav")):
            audio, sr = sf.read(wav, dtype="float32")
            assert sr == SR, wav
            audio = audio[:SR] if len(audio) >= SR else np.pad(audio, (0, SR - len(audio)))
            clips.append(audio)
            labels.append(LABELS.index(label))
            groups.append(wav.name.split("_nohash_")[0] if "_nohash_" in wav.name else wav.name)
    noises = []
    for wav in sorted((root / "_background_noise_").glob("*.wav")):
        audio, sr = sf.read(wav, dtype="float32")
        noises.append(audio)
    return np.stack(clips), np.array(labels), np.array(groups), noises


def kws_features(batch: np.ndarray) -> np.ndarray:
    from kws_kit.audio_io import to_int16
    from kws_kit.frontend import Frontend, FrontendSpec

    return Frontend(FrontendSpec()).batch_features(to_int16(batch)).astype(np.float32)


def mfcc(batch: np.ndarray) -> np.ndarray:
    import librosa

    feats = librosa.feature.mfcc(y=batch, sr=SR, n_mfcc=10, n_fft=640, hop_length=320, win_length=640,
                                 n_mels=40, fmin=20, fmax=4000, center=False)
    return np.swapaxes(feats, -1, -2).astype(np.float32)  # (..., 49, 10)


def augment(clips, noises, rng):
    out = np.empty_like(clips)
    for i, clip in enumerate(clips):
        shift = rng.integers(-1600, 1601)
        c = np.roll(clip, shift)
        if shift > 0:
            c[:shift] = 0
        elif shift < 0:
            c[shift:] = 0
        if rng.random() < 0.8:
            noise = noises[rng.integers(len(noises))]
            start = rng.integers(0, len(noise) - SR)
            c = c + rng.uniform(0.0, 0.1) * noise[start : start + SR]
        out[i] = c
    return out


def parse_spec(spec: str):
    name, _, args = spec.partition(":")
    kwargs = {}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        if "-" in value:
            kwargs[key] = tuple(int(v) for v in value.split("-"))
        else:
            kwargs[key] = float(value) if "." in value else int(value)
    return name, kwargs


def build_spec(spec: str, shape, n_classes, batch_size=None):
    from kws_kit.models import zoo

    name, kwargs = parse_spec(spec)
    if not kwargs:
        return zoo.build(name, shape, n_classes, batch_size=batch_size)
    return zoo.get_entry(name).builder(shape[0], shape[1], n_classes, batch_size=batch_size, **kwargs)


def summarize(paths) -> None:
    """Print a markdown table (mean over seeds) from JSON-lines result files."""
    rows: dict[str, list[dict]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                label = f"`{row['model']}`" + (f" ({row['note']})" if row.get("note") else "")
                rows.setdefault(label, []).append(row)
    print("| model | params | MACs | seeds | float acc. | int8 acc. (mean, min-max) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for model, runs in sorted(rows.items(), key=lambda kv: -np.mean([r["int8_acc"] for r in kv[1]])):
        f = [r["float_acc"] * 100 for r in runs]
        q = [r["int8_acc"] * 100 for r in runs]
        print(f"| {model} | {runs[0]['params']:,} | {runs[0]['macs']:,} | {len(runs)} | {np.mean(f):.1f} | "
              f"{np.mean(q):.1f} ({min(q):.1f}-{max(q):.1f}) |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--summarize", nargs="+", type=Path, default=None,
                    help="print a table from earlier --out files and exit")
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--models", default="tds_resnet,ds_cnn_s")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--copies", type=int, default=3, help="augmented copies of each training clip")
    ap.add_argument("--test-fold", type=int, default=0, help="speaker fold (of 5) held out for testing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frontend", choices=["kws", "librosa"], default="kws")
    ap.add_argument("--out", type=Path, default=None, help="append JSON lines here")
    args = ap.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return

    import keras
    import tensorflow as tf

    from kws_kit.models import zoo
    from kws_kit.quantize import Int8Runner, to_int8_tflite

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    t0 = time.time()
    clips, labels, groups, noises = load_clips(args.data)
    fold = np.array([zlib.crc32(g.encode()) % 5 for g in groups])
    test = fold == args.test_fold
    rng = np.random.default_rng(1234)
    features = kws_features if args.frontend == "kws" else mfcc
    train_clips = clips[~test]
    train_x = [features(train_clips)] + [features(augment(train_clips, noises, rng)) for _ in range(args.copies)]
    train_x = np.concatenate(train_x)
    train_y = np.tile(labels[~test], args.copies + 1)
    test_x, test_y = features(clips[test]), labels[test]
    if args.frontend == "librosa":
        mean, std = train_x.mean(axis=(0, 1)), train_x.std(axis=(0, 1)) + 1e-6
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    print(f"data: {len(train_y)} train (with {args.copies} augmented copies), {len(test_y)} test, "
          f"{time.time() - t0:.0f}s", flush=True)

    shape = train_x.shape[1:]
    for spec in args.models.split(";" if ";" in args.models else ","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            keras.utils.set_random_seed(seed)
            model = build_spec(spec, shape, len(LABELS))
            steps = args.epochs * int(np.ceil(len(train_y) / 64))
            lr = keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.02)
            model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=1e-3),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            t = time.time()
            model.fit(train_x, train_y, batch_size=64, epochs=args.epochs, verbose=0, shuffle=True)
            train_s = time.time() - t
            float_acc = float((model.predict(test_x, verbose=0).argmax(1) == test_y).mean())
            calib = train_x[np.random.default_rng(seed).choice(len(train_x), 200, replace=False)]
            runner = Int8Runner(to_int8_tflite(model, calib))
            int8_acc = float((runner(runner.quantize_input(test_x[..., None])).argmax(1) == test_y).mean())
            row = {"model": spec, "seed": seed, "params": int(model.count_params()), "macs": zoo.count_macs(model),
                   "float_acc": round(float_acc, 4), "int8_acc": round(int8_acc, 4), "epochs": args.epochs,
                   "n_test": int(len(test_y)), "test_fold": args.test_fold, "frontend": args.frontend, "train_s": round(train_s)}
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
