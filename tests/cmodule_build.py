"""Build the `kws` C core (device/cmodule/kws) on the host for tests and benchmarks.

``build_shared()`` compiles the portable core into a shared library (cached by a
hash of the sources and flags) and ``KwsLib`` drives it through ctypes.
``build_program()`` compiles a standalone C program (the sanitizer/fuzz driver)
with the core, optionally with ``-fsanitize=address,undefined`` - a plain
executable needs no LD_PRELOAD of the sanitizer runtime, unlike a ctypes-loaded
library inside CPython.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "device" / "cmodule" / "kws"
CORE = ["kws_model.c", "kws_ops.c", "kws_frontend.c"]
# fp-contract=off: the int8 feature quantisation must round each float32 step like the host does.
BASE_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def cache_root() -> Path:
    root = Path(os.environ.get("KWS_CMODULE_BUILD") or Path(tempfile.gettempdir()) / f"kws-cmodule-{os.getuid()}")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _key(sources: list[Path], flags: list[str]) -> str:
    h = hashlib.sha256()
    for path in sources:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for path in sorted(SRC.glob("*.h")):
        h.update(path.read_bytes())
    h.update(" ".join(flags).encode())
    return h.hexdigest()[:16]


def _compile(sources: list[Path], flags: list[str], out_name: str) -> Path:
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (gcc) found")
    out = cache_root() / f"{out_name}-{_key(sources, flags)}"
    if not out.exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        cmd = [cc, *flags, f"-I{SRC}", *map(str, sources), "-o", str(tmp), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling failed: {' '.join(cmd)}\n{proc.stderr}")
        os.replace(tmp, out)
    return out


def build_shared(sanitize: bool = False, dsp_emulate: bool = False, extra_flags: tuple[str, ...] = ()) -> Path:
    flags = [*BASE_FLAGS, "-shared", "-fPIC", *extra_flags]
    if dsp_emulate:
        flags.append("-DKWS_DSP_EMULATE")
    if sanitize:
        flags += SANITIZE
    return _compile([SRC / name for name in CORE], flags, "libkws" + ("-asan" if sanitize else "") + ".so")


def build_program(main_source: Path, sanitize: bool = False, extra_flags: tuple[str, ...] = ()) -> Path:
    flags = [*BASE_FLAGS, *extra_flags]
    if sanitize:
        flags += SANITIZE
    return _compile([Path(main_source), *(SRC / name for name in CORE)], flags,
                    Path(main_source).stem + ("-asan" if sanitize else ""))


class KwsError(Exception):
    pass


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 120)]


class KwsLib:
    """ctypes view of the core: models (load/invoke in batches) and the front end."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else build_shared()
        lib = self.lib = ctypes.CDLL(str(self.path))
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        lib.kws_model_load.argtypes = [ctypes.POINTER(vp), ctypes.c_char_p, sz, vp, sz, ctypes.POINTER(_Error)]
        lib.kws_model_invoke_batch.argtypes = [vp, vp, vp, ctypes.c_int]
        for name in ("kws_model_input_size", "kws_model_output_size", "kws_model_arena_used"):
            getattr(lib, name).argtypes = [vp]
            getattr(lib, name).restype = sz
        for name in ("kws_model_input_scale", "kws_model_output_scale"):
            getattr(lib, name).argtypes = [vp]
            getattr(lib, name).restype = ctypes.c_float
        for name in ("kws_model_input_zero_point", "kws_model_output_zero_point", "kws_model_op_count"):
            getattr(lib, name).argtypes = [vp]
            getattr(lib, name).restype = ctypes.c_int

    def load(self, model: bytes, arena_size: int = 200_000) -> "CModel":
        return CModel(self, model, arena_size)


class CModel:
    def __init__(self, lib: KwsLib, model: bytes, arena_size: int):
        self._lib = lib
        self._model = ctypes.create_string_buffer(bytes(model), len(model))
        self._arena = ctypes.create_string_buffer(max(1, arena_size))
        handle = ctypes.c_void_p()
        err = _Error()
        rc = lib.lib.kws_model_load(ctypes.byref(handle), ctypes.cast(self._model, ctypes.c_char_p), len(model),
                                    ctypes.cast(self._arena, ctypes.c_void_p), arena_size, ctypes.byref(err))
        if rc != 0:
            self.code = rc
            raise KwsError(f"[{rc}] {err.message.decode()}")
        self.handle = handle
        L = lib.lib
        self.input_size = L.kws_model_input_size(handle)
        self.output_size = L.kws_model_output_size(handle)
        self.input_scale = L.kws_model_input_scale(handle)
        self.input_zero_point = L.kws_model_input_zero_point(handle)
        self.output_scale = L.kws_model_output_scale(handle)
        self.output_zero_point = L.kws_model_output_zero_point(handle)
        self.arena_used = L.kws_model_arena_used(handle)
        self.n_ops = L.kws_model_op_count(handle)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.int8).reshape(len(x), -1))
        if x.shape[1] != self.input_size:
            raise ValueError(f"inputs have {x.shape[1]} values, the model takes {self.input_size}")
        out = np.empty((len(x), self.output_size), dtype=np.int8)
        rc = self._lib.lib.kws_model_invoke_batch(self.handle, x.ctypes.data, out.ctypes.data, len(x))
        if rc != 0:
            raise KwsError(f"invoke failed with {rc}")
        return out
