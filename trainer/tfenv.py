"""Import TensorFlow/Keras quietly and reproducibly (only when a command needs them)."""

from __future__ import annotations

import contextlib
import io
import os
import sys


def quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN reorders float sums between runs; off keeps training reproducible (and quiet).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")


def keras():
    quiet()
    import keras as _keras

    return _keras


def seed_everything(seed: int) -> None:
    """Same seed, same data order, same initial weights, same result (on CPU)."""
    quiet()
    import keras as _keras
    import tensorflow as tf

    _keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # older TF: best effort
        pass


@contextlib.contextmanager
def silenced():
    """Hide what the TFLite converter prints (to Python's and C's stdout/stderr).

    Conversion errors still surface as exceptions; only chatter is dropped.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
