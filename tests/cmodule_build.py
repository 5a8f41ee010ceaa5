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
    tag = "".join(f.replace("-D", "-").lower() for f in extra_flags if f.startswith("-D"))
    if dsp_emulate:
        flags.append("-DKWS_DSP_EMULATE")
    if sanitize:
        flags += SANITIZE
    return _compile([SRC / name for name in CORE], flags, "libkws" + tag + ("-asan" if sanitize else "") + ".so")


def build_program(main_source: Path, sanitize: bool = False, extra_flags: tuple[str, ...] = ()) -> Path:
    flags = [*BASE_FLAGS, *extra_flags]
    if sanitize:
        flags += SANITIZE
    return _compile([Path(main_source), *(SRC / name for name in CORE)], flags,
                    Path(main_source).stem + ("-asan" if sanitize else ""))


def probe_sizes(cc: str, flags: list[str], source: str, expressions: list[str], workdir: Path) -> list[int]:
    """Compile-time values (e.g. ``sizeof(kws_op)``) as ``cc`` with ``flags`` sees them: ``source``
    plus a uint32 array of ``expressions`` in its own section, compiled to an object file and read
    back with objcopy (no need to run the target's code)."""
    probe = workdir / "probe.c"
    probe.write_text(source + '\n__attribute__((section(".kwsprobe"))) const unsigned kws_probe[] = {'
                     + ", ".join(expressions) + "};\n")
    obj = workdir / "probe.o"
    subprocess.run([cc, *flags, f"-I{SRC}", "-c", str(probe), "-o", str(obj)], check=True)
    objcopy = shutil.which(cc.replace("gcc", "objcopy")) or shutil.which("objcopy")
    subprocess.run([objcopy, "-O", "binary", "--only-section=.kwsprobe", str(obj), str(workdir / "probe.bin")],
                   check=True)
    raw = (workdir / "probe.bin").read_bytes()
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 4 * len(expressions), 4)]


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


class _FrontendConfig(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in
                ("window_length", "hop_length", "n_fft", "n_mels", "n_coeffs", "n_frames", "logmel")] + [
        ("pcm_scale", ctypes.c_float), ("log_floor", ctypes.c_float),
        ("mel_starts", ctypes.c_void_p), ("mel_lengths", ctypes.c_void_p), ("mel_weights", ctypes.c_void_p),
        ("int8_frames", ctypes.c_int32), ("in_scale", ctypes.c_float), ("in_zero_point", ctypes.c_int32)]


class CFrontend:
    """The C front end built from a bundle's frontend.json dict (spec fields + tables)."""

    def __init__(self, lib: KwsLib, spec: dict, quantization: tuple[float, int] | None = None):
        """``quantization``: (scale, zero_point) keeps the rolling window as int8 (the board's mode)."""
        self._lib = L = lib.lib
        tables = spec["tables"]
        self._starts = np.asarray(tables["mel_starts"], dtype=np.int32)
        self._lengths = np.asarray([len(w) for w in tables["mel_weights"]], dtype=np.int32)
        flat = [v for band in tables["mel_weights"] for v in band]
        self._weights = np.asarray(flat if flat else [0.0], dtype=np.float32)
        n_frames = 1 + (spec["clip_samples"] - spec["window_length"]) // spec["hop_length"]
        cfg = self.cfg = _FrontendConfig(spec["window_length"], spec["hop_length"], spec["n_fft"], spec["n_mels"],
                                         spec["n_coeffs"], n_frames, int(spec["kind"] == "logmel"),
                                         spec["pcm_scale"], spec["log_floor"], self._starts.ctypes.data,
                                         self._lengths.ctypes.data, self._weights.ctypes.data,
                                         int(quantization is not None), *(quantization or (0.0, 0)))
        self.n_frames, self.n_coeffs, self.window_length = n_frames, spec["n_coeffs"], spec["window_length"]
        L.kws_frontend_mem_size.argtypes = [ctypes.POINTER(_FrontendConfig)]
        L.kws_frontend_mem_size.restype = ctypes.c_size_t
        L.kws_frontend_init.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_FrontendConfig), ctypes.c_void_p,
                                        ctypes.c_size_t, ctypes.POINTER(_Error)]
        L.kws_frontend_push.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        L.kws_frontend_push.restype = ctypes.c_int32
        L.kws_frontend_features.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        L.kws_frontend_features.restype = ctypes.c_int
        L.kws_frontend_features_int8.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float, ctypes.c_int32]
        L.kws_frontend_features_int8.restype = ctypes.c_int
        L.kws_frontend_heap_scratch_bytes.argtypes = [ctypes.POINTER(_FrontendConfig)]
        L.kws_frontend_heap_scratch_bytes.restype = ctypes.c_size_t
        L.kws_frontend_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        L.kws_frontend_reset.argtypes = [ctypes.c_void_p]
        L.kws_frontend_frames_ready.argtypes = [ctypes.c_void_p]
        L.kws_frontend_frames_ready.restype = ctypes.c_int32
        L.kws_quantize_features.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_float, ctypes.c_int32]
        self.mem_size = L.kws_frontend_mem_size(ctypes.byref(cfg))
        self.heap_scratch_bytes = L.kws_frontend_heap_scratch_bytes(ctypes.byref(cfg))
        if not self.mem_size:
            raise KwsError("invalid front end configuration")
        self._mem = ctypes.create_string_buffer(self.mem_size)
        self.handle = ctypes.c_void_p()
        err = _Error()
        rc = L.kws_frontend_init(ctypes.byref(self.handle), ctypes.byref(cfg), ctypes.cast(self._mem, ctypes.c_void_p),
                                 self.mem_size, ctypes.byref(err))
        if rc:
            raise KwsError(f"[{rc}] {err.message.decode()}")

    def reset(self) -> None:
        self._lib.kws_frontend_reset(self.handle)

    def push(self, pcm: np.ndarray) -> int:
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        return self._lib.kws_frontend_push(self.handle, pcm.ctypes.data, len(pcm))

    @property
    def frames_ready(self) -> int:
        return self._lib.kws_frontend_frames_ready(self.handle)

    def features(self) -> np.ndarray:
        out = np.empty((self.n_frames, self.n_coeffs), dtype=np.float32)
        if self._lib.kws_frontend_features(self.handle, out.ctypes.data):
            raise KwsError("the rolling window is kept as int8")
        return out

    def features_int8(self, scale: float, zero_point: int) -> np.ndarray:
        out = np.empty((self.n_frames, self.n_coeffs), dtype=np.int8)
        if self._lib.kws_frontend_features_int8(self.handle, out.ctypes.data, scale, zero_point):
            raise KwsError("the rolling window is kept as int8 with another quantisation")
        return out

    def clip_features(self, pcm: np.ndarray) -> np.ndarray:
        self.reset()
        self.push(pcm)
        return self.features()

    def frame(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        out = np.empty(self.n_coeffs, dtype=np.float32)
        self._lib.kws_frontend_frame(self.handle, pcm.ctypes.data, out.ctypes.data)
        return out

    def quantize(self, x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        q = np.empty(x.shape, dtype=np.int8)
        self._lib.kws_quantize_features(x.ctypes.data, q.ctypes.data, x.size, scale, zero_point)
        return q


def zoo_models(cache_dir: Path, shape=(49, 10), n_classes: int = 12) -> dict[str, bytes]:
    """Every zoo model with random weights and non-trivial batch-norm statistics, converted to int8.

    Cached in ``cache_dir`` keyed by the sources that define the result.
    """
    import sys

    from kws_kit import quantize
    from kws_kit.models import zoo

    h = hashlib.sha256()
    for mod in (zoo, quantize, sys.modules[__name__]):
        h.update(Path(mod.__file__).read_bytes())
    h.update(repr((shape, n_classes)).encode())
    folder = Path(cache_dir) / f"zoo-{h.hexdigest()[:16]}"
    names = zoo.model_names()
    if all((folder / f"{n}.tflite").is_file() for n in names):
        return {n: (folder / f"{n}.tflite").read_bytes() for n in names}
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    out = {}
    for name in names:
        model = zoo.build(name, shape, n_classes, batch_size=1)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                g, b, mu, var = layer.get_weights()
                layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype(np.float32),
                                   rng.normal(0, 0.3, b.shape).astype(np.float32),
                                   rng.normal(0, 0.3, mu.shape).astype(np.float32),
                                   rng.uniform(0.5, 2.0, var.shape).astype(np.float32)])
        rep = rng.normal(0, 1, (32, *shape, 1)).astype(np.float32)
        out[name] = quantize.to_int8_tflite(model, rep)
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in out.items():
        tmp = folder / f"{name}.tflite.tmp{os.getpid()}"
        tmp.write_bytes(blob)
        os.replace(tmp, folder / f"{name}.tflite")
    return out


def test_inputs(tflite: bytes, n_real: int = 240, n_random: int = 240, seed: int = 0) -> np.ndarray:
    """int8 model inputs: real features of generated audio, random values and extremes (>= 500 rows)."""
    from kws_kit.frontend import Frontend, quantize_features
    from kws_kit.tflite_info import inspect_tflite

    info = inspect_tflite(tflite)
    per = int(np.prod(info.input_shape[1:]))
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000.0
    clips = []
    for i in range(n_real):
        f0 = rng.uniform(80, 3000)
        sweep = np.sin(2 * np.pi * (f0 * t + rng.uniform(-800, 800) * t * t))
        env = np.exp(-0.5 * ((t - rng.uniform(0.2, 0.8)) / rng.uniform(0.05, 0.3)) ** 2)
        x = rng.uniform(0.01, 0.9) * env * sweep + rng.uniform(0, 0.05) * rng.normal(size=16000)
        if i % 7 == 0:
            x *= 4.0  # clipped
        clips.append(np.clip(x, -1, 1))
    if n_real:
        feats = Frontend().batch_features(np.asarray(clips, dtype=np.float32))
        real = quantize_features(feats, info.input_scale, info.input_zero_point).reshape(n_real, -1)
    else:
        real = np.zeros((0, per), np.int8)
    rand = rng.integers(-128, 128, size=(n_random, per)).astype(np.int8)
    extremes = [np.full(per, v, np.int8) for v in (-128, 127, 0, info.input_zero_point)]
    extremes.append(np.where(np.arange(per) % 2, 127, -128).astype(np.int8))
    extremes.append(np.where(np.arange(per) % 3 == 0, 127, info.input_zero_point).astype(np.int8))
    extremes += [np.where(rng.random(per) < p, 127, -128).astype(np.int8) for p in np.linspace(0.05, 0.95, 14)]
    return np.concatenate([real, rand, np.asarray(extremes)]).astype(np.int8)


def tflm_outputs(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """The TensorFlow Lite Micro interpreter (PyPI tflite-micro) on int8 inputs: the arithmetic the boards run."""
    from tflite_micro import runtime

    from kws_kit.tflite_info import inspect_tflite

    info = inspect_tflite(tflite)
    interp = runtime.Interpreter.from_bytes(bytes(tflite), arena_size=max(10 * len(tflite), 2 * info.arena_bytes + (64 << 10)))
    shape = tuple(interp.get_input_details(0)["shape"])
    x = np.ascontiguousarray(np.asarray(x, np.int8).reshape((len(x),) + shape[1:]))
    out = []
    for i in range(len(x)):
        interp.set_input(x[i : i + 1], 0)
        interp.invoke()
        out.append(np.array(interp.get_output(0)).reshape(-1))
    return np.asarray(out, dtype=np.int8)


def litert_reference_outputs(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """ai-edge-litert's reference kernels (BUILTIN_REF)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=bytes(tflite), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    i_d, o_d = interp.get_input_details()[0], interp.get_output_details()[0]
    out = []
    for row in np.asarray(x, np.int8):
        interp.set_tensor(i_d["index"], row.reshape(i_d["shape"]))
        interp.invoke()
        out.append(interp.get_tensor(o_d["index"]).reshape(-1))
    return np.asarray(out, dtype=np.int8)


def model_cache_dir(request, name: str = "kws_cmodule"):
    """pytest's cache folder when the cache plugin is on (faster re-runs), else a temp folder."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return cache.mkdir(name)
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix=name + "-"))
