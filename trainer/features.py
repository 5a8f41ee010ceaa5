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

import dataclasses
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
    """Key from identifying fields of a clip: a manifest row (dataclass) and/or values
    such as path, size, mtime, offset, augmentation seed."""
    canonical = json.dumps([_plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class FeatureCache:
    """Cached features under ``root`` (default: KWS_CACHE_DIR or ~/.cache/kws-kit/features).

    Bind a spec at construction (``FeatureCache(root, spec)``) or pass it per call
    (``get_or_compute(spec, keys, compute_fn)``); each spec has its own folder.
    """

    def __init__(self, root: str | os.PathLike | None = None, spec: FrontendSpec | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.spec = spec
        self.hits = 0
        self.misses = 0
        self.repaired = 0
        self._warned = False

    @classmethod
    def default(cls, spec: FrontendSpec | None = None) -> "FeatureCache":
        return cls(None, spec)

    def _spec(self, spec: FrontendSpec | None) -> FrontendSpec:
        spec = spec if spec is not None else self.spec
        if not isinstance(spec, FrontendSpec):
            raise TypeError("FeatureCache needs a FrontendSpec: FeatureCache(root, spec) or get_or_compute(spec, keys, fn)")
        return spec

    def folder_for(self, spec: FrontendSpec | None = None) -> Path:
        return self.root / self._spec(spec).fingerprint()

    @property
    def folder(self) -> Path:
        return self.folder_for(None)

    def path(self, key: str, spec: FrontendSpec | None = None) -> Path:
        if not isinstance(key, str) or not _KEY_PATTERN.match(key):
            raise ValueError(f"feature cache key must be 8-128 characters of [0-9A-Za-z_.-], got {key!r}")
        return self.folder_for(spec) / key[:2] / f"{key}.npy"

    def get(self, key: str, spec: FrontendSpec | None = None) -> np.ndarray | None:
        """The cached features, or None when absent or unusable."""
        spec = self._spec(spec)
        try:
            data = self.path(key, spec).read_bytes()
        except OSError:
            return None
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception:  # truncated or garbage file: treat as a miss, recompute
            self.repaired += 1
            return None
        if arr.dtype != np.float32 or arr.shape != spec.feature_shape or not np.all(np.isfinite(arr)):
            self.repaired += 1
            return None
        return arr

    def put(self, key: str, features: np.ndarray, spec: FrontendSpec | None = None) -> None:
        spec = self._spec(spec)
        arr = np.asarray(features, dtype=np.float32)
        if arr.shape != spec.feature_shape:
            raise ValueError(f"features of shape {arr.shape} do not match the spec's {spec.feature_shape}")
        buffer = io.BytesIO()
        np.save(buffer, arr, allow_pickle=False)
        atomic.write_bytes(self.path(key, spec), buffer.getvalue())

    def get_or_compute(self, *args: Any) -> np.ndarray:
        """``get_or_compute(keys, compute_fn)`` or ``get_or_compute(spec, keys, compute_fn)``.

        Returns (len(keys), *feature_shape) float32 features, computing only what
        is missing: ``compute_fn(positions)`` gets the positions in ``keys`` that
        missed (in order, each key once) and returns their features stacked in
        that order, so the caller decodes and runs ``Frontend.batch_features`` once.
        """
        if len(args) == 3:
            spec, keys, compute_fn = args
        elif len(args) == 2:
            spec, (keys, compute_fn) = None, args
        else:
            raise TypeError("get_or_compute(keys, compute_fn) or get_or_compute(spec, keys, compute_fn)")
        spec = self._spec(spec)
        shape = spec.feature_shape
        out = np.empty((len(keys), *shape), dtype=np.float32)
        first_position: dict[str, int] = {}
        missing: list[int] = []
        duplicates: list[tuple[int, int]] = []
        for position, key in enumerate(keys):
            if key in first_position:
                duplicates.append((position, first_position[key]))
                continue
            first_position[key] = position
            cached = self.get(key, spec)
            if cached is None:
                missing.append(position)
            else:
                out[position] = cached
        self.hits += len(first_position) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = np.asarray(compute_fn(list(missing)), dtype=np.float32)
            if computed.shape != (len(missing), *shape):
                raise ValueError(f"compute_fn returned shape {computed.shape}, expected {(len(missing), *shape)}")
            for row, position in zip(computed, missing):
                out[position] = row
                try:
                    self.put(keys[position], row, spec)
                except OSError as exc:
                    # A full or read-only cache disk slows later runs; it must not stop this one.
                    if not self._warned:
                        self._warned = True
                        warn(f"feature cache {self.root} is not writable ({exc.strerror or exc}); features are not cached")
        for position, source in duplicates:
            out[position] = out[source]
        return out
