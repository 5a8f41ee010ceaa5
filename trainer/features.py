"""On-disk feature cache: features are computed once per (front end spec, audio).

Layout: ``<root>/<spec fingerprint>/<key[:2]>/<key>.npy``, one float32 array of
``spec.feature_shape`` per entry. A changed spec gets a new folder, so stale
features are never returned. Entries are written atomically; an unreadable or
wrong-shaped entry is recomputed and overwritten, never fatal.

Keys name the audio: :func:`pcm_key` hashes the int16 samples themselves (always
right, costs a hash), :func:`row_key` hashes whatever fields identify a clip
(path, size, mtime, offset, augmentation seed...) when decoding is the cost to save.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import atomic
from .frontend import FrontendSpec, as_pcm16
from .progress import warn

_KEY_PATTERN = re.compile(r"^[0-9A-Za-z_.-]{8,128}$")


def default_root() -> Path:
    env = os.environ.get("KWS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/kws-kit/features").expanduser()


def pcm_key(pcm: Any) -> str:
    """Key from the int16 samples (float audio is converted as the front end would)."""
    samples = np.ascontiguousarray(as_pcm16(pcm), dtype="<i2")
    digest = hashlib.sha256(str(samples.shape).encode())
    digest.update(samples.tobytes())
    return digest.hexdigest()[:32]


def row_key(*parts: Any) -> str:
    """Key from identifying fields of a clip (e.g. path, size, mtime, offset, seed)."""
    canonical = json.dumps([str(p) if isinstance(p, os.PathLike) else p for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class FeatureCache:
    """Features for one :class:`FrontendSpec`, cached under ``root`` (default: KWS_CACHE_DIR or ~/.cache/kws-kit/features)."""

    def __init__(self, root: str | os.PathLike | None, spec: FrontendSpec):
        self.spec = spec
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.folder = self.root / spec.fingerprint()
        self.hits = 0
        self.misses = 0
        self.repaired = 0
        self._warned = False

    def path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_PATTERN.match(key):
            raise ValueError(f"feature cache key must be 8-128 characters of [0-9A-Za-z_.-], got {key!r}")
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached features, or None when absent or unusable."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return None
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception:  # truncated or garbage file: treat as a miss, recompute
            self.repaired += 1
            return None
        if arr.dtype != np.float32 or arr.shape != self.spec.feature_shape or not np.all(np.isfinite(arr)):
            self.repaired += 1
            return None
        return arr

    def put(self, key: str, features: np.ndarray) -> None:
        arr = np.asarray(features, dtype=np.float32)
        if arr.shape != self.spec.feature_shape:
            raise ValueError(f"features of shape {arr.shape} do not match the spec's {self.spec.feature_shape}")
        buffer = io.BytesIO()
        np.save(buffer, arr, allow_pickle=False)
        atomic.write_bytes(self.path(key), buffer.getvalue())

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute_fn: Callable[[list[int]], np.ndarray],
    ) -> np.ndarray:
        """(len(keys), *feature_shape) float32 features, computing only what is missing.

        ``compute_fn(positions)`` gets the positions in ``keys`` that missed (in
        order, each key once) and returns their features stacked in that order,
        so the caller can decode and run ``Frontend.batch_features`` in one go.
        """
        out = np.empty((len(keys), *self.spec.feature_shape), dtype=np.float32)
        first_position: dict[str, int] = {}
        missing: list[int] = []
        duplicates: list[tuple[int, int]] = []
        for position, key in enumerate(keys):
            if key in first_position:
                duplicates.append((position, first_position[key]))
                continue
            first_position[key] = position
            cached = self.get(key)
            if cached is None:
                missing.append(position)
            else:
                out[position] = cached
        self.hits += len(first_position) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = np.asarray(compute_fn(list(missing)), dtype=np.float32)
            if computed.shape != (len(missing), *self.spec.feature_shape):
                raise ValueError(
                    f"compute_fn returned shape {computed.shape}, expected {(len(missing), *self.spec.feature_shape)}"
                )
            for row, position in zip(computed, missing):
                out[position] = row
                try:
                    self.put(keys[position], row)
                except OSError as exc:
                    # A full or read-only cache disk slows later runs; it must not stop this one.
                    if not self._warned:
                        self._warned = True
                        warn(f"feature cache {self.folder} is not writable ({exc.strerror or exc}); features are not cached")
        for position, source in duplicates:
            out[position] = out[source]
        return out
