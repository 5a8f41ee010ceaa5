"""Training: curated dataset -> features (the device's front end) -> Keras model in a run folder.

A run folder holds everything needed to resume, export and audit a training run:
``run.json`` (configuration and fingerprints of the data and front end),
``frontend.json``, ``best.keras`` (best on validation), ``last.keras`` and
``state.json`` (for ``--resume``), ``history.csv`` and ``curves.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import atomic
from .errors import DataError, ModelError
from .progress import info, warn

RUN_FORMAT = 1
RUN_FILES = ("run.json", "frontend.json", "state.json", "best.keras", "last.keras", "history.csv", "curves.png")
# Keep raw waveforms in memory for on-the-fly augmentation up to this size; past it,
# train on cached features with SpecAugment only (a full Speech Commands train split
# would not fit comfortably in RAM as audio).
MAX_WAVEFORM_BYTES = 2 * 1024**3


@dataclass
class TrainConfig:
    data: str
    model: str
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0
    patience: int = 10
    augment: bool = True
    extra_noise_prob: float = 0.5
    snr_db: tuple[float, float] = (0.0, 20.0)
    shift_ms: float = 100.0
    gain_db: float = 6.0
    time_masks: int = 2
    time_mask_frames: int = 5
    freq_masks: int = 1
    freq_mask_bins: int = 2
    board: str | None = None
    spec: dict = field(default_factory=dict)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Data preparation


@dataclass
class Prepared:
    labels: list[str]
    x_val: np.ndarray
    y_val: np.ndarray
    y_train: np.ndarray
    train_waves: np.ndarray | None  # int16 (N, samples) when augmenting on the fly
    x_train: np.ndarray | None  # features when not augmenting the waveform
    noise: list[np.ndarray]  # training-region noise for extra mixing


def label_indices(rows, labels: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    try:
        return np.array([index[r.label] for r in rows], dtype=np.int32)
    except KeyError as exc:
        raise DataError(f"manifest has an example of class {exc.args[0]!r} that is not in the dataset's labels") from exc


def check_dataset(ds) -> None:
    train, val = ds.rows_for("train"), ds.rows_for("validation")
    if not train:
        raise DataError(f"{ds.root}: no training examples", hint="curate with more speakers or sources")
    present = sorted({r.label for r in train})
    if len(present) < 2:
        raise DataError(f"{ds.root}: training data has only one class ({present[0]}); need at least two")
    if not val:
        raise DataError(f"{ds.root}: no validation examples", hint="add speakers so every split gets some")


def features_for_rows(rows, spec, cache=None) -> np.ndarray:
    """Clip features for manifest rows, through the on-disk feature cache."""
    from .data.curate import render_many
    from .features import FeatureCache, row_key
    from .frontend import Frontend

    frontend = Frontend(spec)
    cache = cache if cache is not None else FeatureCache.default()

    def compute(missing_rows):
        return frontend.batch_features(render_many(missing_rows))

    keys = [row_key(r, _stat(r.path), _stat(r.noise_path)) for r in rows]
    return cache.get_or_compute(spec, keys, lambda idx: compute([rows[i] for i in idx]))


def _stat(path: str) -> tuple[int, int] | None:
    """Size and mtime, so a replaced audio file invalidates its cached features."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def load_noise(ds, split: str) -> list[np.ndarray]:
    from . import audio_io

    out = []
    for region in ds.noise_regions:
        if region.split != split:
            continue
        try:
            x = audio_io.load(region.path, offset=region.start_s, duration=max(0.0, region.end_s - region.start_s))
        except Exception as exc:  # a noise file that vanished is not fatal for training
            warn(f"skipping noise file {region.path}: {exc}")
            continue
        if len(x) >= audio_io.SAMPLE_RATE:
            out.append(x)
    return out


def prepare(ds, spec, cfg: TrainConfig) -> Prepared:
    from . import audio_io
    from .data.curate import render_many

    labels = list(ds.labels)
    train_rows, val_rows = ds.rows_for("train"), ds.rows_for("validation")
    info(f"dataset: {len(train_rows)} train / {len(val_rows)} validation examples, classes: {', '.join(labels)}")
    x_val = features_for_rows(val_rows, spec)
    y_val = label_indices(val_rows, labels)
    y_train = label_indices(train_rows, labels)
    wave_bytes = len(train_rows) * spec.clip_samples * 2
    if cfg.augment and wave_bytes <= MAX_WAVEFORM_BYTES:
        train_waves = audio_io.to_int16(render_many(train_rows))
        return Prepared(labels, x_val, y_val, y_train, train_waves, None, load_noise(ds, "train"))
    if cfg.augment:
        warn("training set too large to augment audio in memory: using cached features with SpecAugment only")
    return Prepared(labels, x_val, y_val, y_train, None, features_for_rows(train_rows, spec), [])


# ---------------------------------------------------------------------------
# Augmentation (numpy, per batch, seeded by epoch and batch index)


def augment_waves(waves: np.ndarray, noise: list[np.ndarray], rng: np.random.Generator, cfg: TrainConfig, sample_rate: int):
    """Random time shift, gain and extra background noise at a random SNR."""
    x = waves.astype(np.float32) * (1.0 / 32768.0)
    n, length = x.shape
    max_shift = int(cfg.shift_ms * sample_rate / 1000)
    if max_shift:
        shifts = rng.integers(-max_shift, max_shift + 1, size=n)
        idx = np.arange(length)[None, :] - shifts[:, None]
        valid = (idx >= 0) & (idx < length)
        x = np.where(valid, np.take_along_axis(x, np.clip(idx, 0, length - 1), axis=1), 0.0).astype(np.float32)
    gains = 10.0 ** (rng.uniform(-cfg.gain_db, cfg.gain_db, size=(n, 1)) / 20.0)
    x *= gains.astype(np.float32)
    if noise and cfg.extra_noise_prob > 0:
        use = rng.random(n) < cfg.extra_noise_prob
        for i in np.flatnonzero(use):
            src = noise[rng.integers(len(noise))]
            start = rng.integers(0, len(src) - length + 1)
            seg = src[start : start + length]
            p_sig = float(np.mean(x[i] ** 2)) + 1e-10
            p_noise = float(np.mean(seg**2)) + 1e-10
            snr = rng.uniform(*cfg.snr_db)
            x[i] += seg * np.float32(math.sqrt(p_sig / (p_noise * 10.0 ** (snr / 10.0))))
    return np.clip(x, -1.0, 1.0)


def spec_augment(feats: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
    """Zero random spans of frames and coefficients (SpecAugment-style masks)."""
    out = feats.copy()
    n, frames, coeffs = out.shape
    for _ in range(cfg.time_masks):
        width = rng.integers(0, cfg.time_mask_frames + 1, size=n)
        start = rng.integers(0, frames, size=n)
        t = np.arange(frames)[None, :]
        mask = (t >= start[:, None]) & (t < (start + width)[:, None])
        out[mask] = 0.0
    for _ in range(cfg.freq_masks):
        width = rng.integers(0, cfg.freq_mask_bins + 1, size=n)
        start = rng.integers(0, coeffs, size=n)
        c = np.arange(coeffs)[None, :]
        mask = (c >= start[:, None]) & (c < (start + width)[:, None])
        out[np.broadcast_to(mask[:, None, :], out.shape)] = 0.0
    return out


class TrainBatches:
    """Shuffled, augmented batches; deterministic from (seed, epoch, batch index)."""

    def __init__(self, prep: Prepared, spec, cfg: TrainConfig, frontend):
        self.prep, self.spec, self.cfg, self.frontend = prep, spec, cfg, frontend
        self.n = len(prep.y_train)

    def __len__(self) -> int:
        return math.ceil(self.n / self.cfg.batch_size)

    def epoch(self, epoch: int):
        cfg, prep = self.cfg, self.prep
        order = np.random.default_rng([cfg.seed, epoch, 0]).permutation(self.n)
        for i in range(len(self)):
            idx = np.sort(order[i * cfg.batch_size : (i + 1) * cfg.batch_size])
            rng = np.random.default_rng([cfg.seed, epoch, i + 1])
            if prep.train_waves is not None:
                waves = prep.train_waves[idx]
                if cfg.augment:
                    waves = augment_waves(waves, prep.noise, rng, cfg, self.spec.sample_rate)
                feats = self.frontend.batch_features(waves)
            else:
                feats = prep.x_train[idx]
            if cfg.augment:
                feats = spec_augment(feats, rng, cfg)
            yield feats[..., None], prep.y_train[idx]


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities, calling the model directly (no tf.data pipeline per call)."""
    out = [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def evaluate_model(model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy."""
    p = predict(model, x)
    loss = float(np.mean(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))))
    return loss, float(np.mean(p.argmax(axis=1) == y))


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


# ---------------------------------------------------------------------------
# Run folder


def _keras():
    from .tfenv import keras

    return keras()


def read_run(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ModelError(f"{run_dir} is not a training run folder (no run.json)")
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable run description ({exc})") from exc
    if run.get("format") != RUN_FORMAT:
        raise ModelError(f"{run_dir}: run folder format {run.get('format')} is not supported by this kws-kit")
    return run


def load_checkpoint(path: Path):
    keras = _keras()
    if not path.is_file():
        raise ModelError(f"checkpoint {path} is missing")
    try:
        return keras.models.load_model(path, compile=True)
    except Exception as exc:
        raise ModelError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__})") from exc


def save_model_atomic(model, path: Path) -> None:
    with atomic.output_file(path, suffix=".keras") as tmp:
        model.save(tmp)


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["loss"] for h in history], label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(epochs, [h["accuracy"] for h in history], label="train")
    ax2.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    fig.suptitle("kws-kit training curves")
    fig.tight_layout()
    with atomic.output_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False, spec=None) -> dict:
    """Train ``cfg.model`` on ``cfg.data`` into ``run_dir``; return the final state."""
    from .data.curate import load_curated
    from .frontend import Frontend, FrontendSpec
    from .tfenv import seed_everything

    run_dir = Path(run_dir)
    if resume:
        run = read_run(run_dir)
        cfg = TrainConfig(**{**run["config"], "epochs": max(cfg.epochs, run["config"]["epochs"])})
        spec = FrontendSpec.from_dict(run["config"]["spec"])
        state = _read_state(run_dir)
    else:
        if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
            raise ModelError(f"run folder {run_dir} already exists", hint="pass --resume to continue it or --overwrite")
        spec = spec or FrontendSpec()
        cfg.spec = spec.to_dict()
        if overwrite:
            for name in RUN_FILES:  # only what a run writes; anything else the user put there stays
                (run_dir / name).unlink(missing_ok=True)
        state = {"epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "history": [], "done": False}

    ds = load_curated(cfg.data)
    check_dataset(ds)
    manifest_hash = file_sha256(Path(cfg.data) / "manifest.csv")
    if resume and run.get("manifest_sha256") != manifest_hash:
        raise ModelError(f"{cfg.data} changed since this run started (manifest differs); start a new run")

    labels = list(ds.labels)
    zoo = _zoo()
    if cfg.model not in zoo.model_names():
        raise ModelError(f"unknown model {cfg.model!r}; valid models: {', '.join(zoo.model_names())}")
    _check_board(cfg, spec, len(labels))

    seed_everything(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        run = {
            "format": RUN_FORMAT,
            "config": asdict(cfg),
            "labels": labels,
            "frontend_fingerprint": spec.fingerprint(),
            "manifest_sha256": manifest_hash,
        }
        atomic.write_text(run_dir / "run.json", json.dumps(run, indent=2))
        from .frontend import spec_to_bundle_json

        atomic.write_text(run_dir / "frontend.json", json.dumps(spec_to_bundle_json(spec), indent=1))
        atomic.write_text(run_dir / "state.json", json.dumps(state, indent=2))
    if state.get("done") and state["epoch"] >= cfg.epochs:
        info(f"run {run_dir} already finished at epoch {state['epoch']}; pass a larger --epochs to continue it")
        return state
    state["done"] = False

    frontend = Frontend(spec)
    prep = prepare(ds, spec, cfg)
    keras = _keras()
    if resume and state["epoch"] > 0:
        model = load_checkpoint(run_dir / "last.keras")
        info(f"resuming {cfg.model} at epoch {state['epoch'] + 1}")
    else:
        model = zoo.build(cfg.model, spec.feature_shape, len(labels))
        steps = math.ceil(len(prep.y_train) / cfg.batch_size) * cfg.epochs
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=max(1, steps), alpha=0.05)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
    batches = TrainBatches(prep, spec, cfg, frontend)
    weights = class_weights(prep.y_train, len(labels))
    sample_weight_of = np.array([weights[i] for i in range(len(labels))], dtype=np.float32)
    x_val = prep.x_val[..., None]

    from .progress import make_progress

    bad_epochs = state["epoch"] - state["best_epoch"]
    with make_progress() as progress:
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            task = progress.add_task(f"epoch {epoch}/{cfg.epochs}", total=len(batches))
            model.reset_metrics()
            seen = loss_sum = correct = 0.0
            for x, y in batches.epoch(epoch):
                logs = model.train_on_batch(x, y, sample_weight=sample_weight_of[y], return_dict=True)
                # train_on_batch reports the batch alone; keep epoch averages ourselves.
                seen += len(y)
                loss_sum += float(logs["loss"]) * len(y)
                correct += float(logs["accuracy"]) * len(y)
                progress.advance(task)
            val_loss, val_acc = evaluate_model(model, x_val, prep.y_val)
            row = {
                "epoch": epoch,
                "loss": loss_sum / seen,
                "accuracy": correct / seen,
                "val_loss": float(val_loss),
                "val_accuracy": float(val_acc),
            }
            progress.update(task, description=f"epoch {epoch}/{cfg.epochs} val_acc {val_acc:.3f}")
            state["history"].append(row)
            state["epoch"] = epoch
            if val_acc > state["best_val_accuracy"]:
                state["best_val_accuracy"] = float(val_acc)
                state["best_epoch"] = epoch
                save_model_atomic(model, run_dir / "best.keras")
                bad_epochs = 0
            else:
                bad_epochs += 1
            save_model_atomic(model, run_dir / "last.keras")
            stop = bad_epochs >= cfg.patience
            state["done"] = stop or epoch == cfg.epochs
            _write_history(run_dir, state)
            if stop:
                info(f"early stop: no validation improvement for {cfg.patience} epochs")
                break
    plot_curves(state["history"], run_dir / "curves.png")
    info(
        f"best validation accuracy {state['best_val_accuracy']:.3f} at epoch {state['best_epoch']}; "
        f"run saved in {run_dir}"
    )
    return state


def _zoo():
    from .models import zoo

    return zoo


def _check_board(cfg: TrainConfig, spec, n_classes: int) -> None:
    if not cfg.board:
        return
    from .boards import load_profile
    from .budget import ensure_fits
    from .models import zoo

    profile = load_profile(cfg.board)
    ensure_fits(zoo.describe(cfg.model, spec.feature_shape, n_classes), profile, model_name=cfg.model)


def _read_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{run_dir}/state.json is missing or corrupt; cannot resume") from exc


def _write_history(run_dir: Path, state: dict) -> None:
    atomic.write_text(run_dir / "state.json", json.dumps(state, indent=2))
    keys = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    lines = [",".join(keys)] + [",".join(f"{h[k]:.6g}" if k != "epoch" else str(h[k]) for k in keys) for h in state["history"]]
    atomic.write_text(run_dir / "history.csv", "\n".join(lines) + "\n")
