"""``kws-kit simulate``: run the board's own loop on a WAV file, on the laptop.

Exactly the device code path: the ``kwsrt`` modules (audio ring and WavSource,
StreamingFrontend, loop, Recognizer, Responders) run under CPython with numpy
standing in for ulab, built by ``kwsrt.loop.build`` from a config.json made the
way ``kws-kit deploy`` makes it from the board profile. Only the int8 model
runs on a host runner: the TensorFlow Lite Micro interpreter (the arithmetic the C
engine and the ulab runner reproduce bit for bit) by default, or the pure-Python ``UlabRunner`` from
``kwsrt.runners`` with ``runner="ulab"``.

Detections come out identical to the trainer's streaming evaluation
(``streaming.score_stream`` + ``run_recognizer``) on the same audio: same
inference times (every 250 ms of audio, counted in samples), same frames,
same int8 features (the device front end quantises with the trainer's float32
formula), same recogniser (tests/test_simulate.py).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import AudioError, BoardError, KwsError, ModelError

RUNNERS = ("tflm", "ulab")


class HostRunner:
    """The runner interface (``kwsrt.runners``) over the TensorFlow Lite Micro interpreter."""

    name = "host-tflm"

    def __init__(self, model_bytes: bytes):
        from .quantize import Int8Runner

        self._run = Int8Runner(bytes(model_bytes), kernels="tflm")
        info = self._run.info
        self.input_scale = float(info.input_scale)
        self.input_zero_point = int(info.input_zero_point)
        self.output_scale = float(info.output_scale)
        self.output_zero_point = int(info.output_zero_point)
        self._shape = (1,) + tuple(self._run.input_shape[1:])

    def invoke(self, features_int8) -> np.ndarray:
        x = np.frombuffer(features_int8, dtype=np.int8).reshape(self._shape)
        return self._run(x)[0]


def make_host_runner(model_bytes: bytes, kind: str = "tflm"):
    if kind in ("tflm", "reference"):  # "reference": the old name of this runner
        return HostRunner(model_bytes)
    if kind == "ulab":
        try:
            from kws_kit.device.kwsrt import runners
        except ImportError:
            raise KwsError("the ulab runner (device/kwsrt/runners.py) is not in this kws-kit yet",
                           hint="use --runner reference") from None
        runner = runners.make_runner(bytes(model_bytes), None, prefer=("ulab",))
        return runner
    raise KwsError(f"unknown runner {kind!r}", hint=f"use one of {', '.join(RUNNERS)}")


def board_config(profile: dict, bundle_dir: str | os.PathLike, arena_size: int | None = None,
                 verbose: bool = False, actions: dict | None = None) -> dict:
    """The config.json a board gets from ``kws-kit deploy`` (without user actions by default)."""
    runner = [profile["runner"]] + ([profile["runner_fallback"]] if profile.get("runner_fallback") else [])
    return {
        "board": profile["name"],
        "bundle_dir": str(bundle_dir),
        "verbose": verbose,
        "actions": actions or {},
        "audio": dict(profile["audio"]),
        "led_pin": profile["led"]["pin"],
        "led_active_high": profile["led"].get("active_high", True),
        "runner": runner,
        "arena_size": arena_size,
    }


def playable_wav(path: str | os.PathLike, workdir: str | os.PathLike) -> tuple[Path, str | None]:
    """``path`` if the device's WavSource can play it, else a 16 kHz mono 16-bit copy in ``workdir``.

    Returns (path to play, a note saying what was converted or None).
    """
    from kws_kit.device.kwsrt import audio as device_audio

    from . import audio_io

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        device_audio.WavSource(str(path)).close()
        return path, None
    except device_audio.AudioFormatError as exc:
        reason = str(exc)
    x = audio_io.load(path)  # any rate, channels, bit depth; AudioError if unreadable
    try:
        rate, channels, _ = audio_io.info(path)
        what = f"{rate} Hz, {channels} channel(s)"
    except KwsError:
        what = reason
    out = audio_io.save_wav(Path(workdir) / "input_16k_mono.wav", x, 16000)
    return out, f"converted {path.name} ({what}) to 16 kHz mono 16-bit on the host first"


@dataclasses.dataclass
class SimulationResult:
    board: str
    runner: str
    duration_s: float
    labels: list[str]
    detections: list[dict]  # {"t_ms", "label", "score"} as the board prints them
    inferences: int
    frames: int
    overruns: int
    fe_us_per_frame: dict  # mean / max / p95 over inferences (front-end time of one 20 ms hop)
    infer_us: dict  # mean / max / p95 per inference
    heap: dict
    lines: list[str]
    note: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("lines")
        return d


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "p95": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def _nbytes(obj: Any) -> int:
    """Bytes held by the arrays/buffers that are attributes of ``obj`` (a device object)."""
    total = 0
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif isinstance(value, (bytearray, bytes)):
            total += len(value)
        elif isinstance(value, list) and value and isinstance(value[0], int):
            total += 4 * len(value)  # a MicroPython list of small ints: one word each
    return total


def heap_estimate(profile: dict, model_bytes: bytes, app, frontend_spec: dict | None = None) -> dict:
    """Model + arena (tflite_info) + the loop's buffers (counted from the objects) + the
    profile's runtime estimate, against the profile's heap budget (kws_kit.budget).

    On a board whose front end is the kws C module's (the Nucleo) the front end's share is
    what that module holds (``kws_frontend_memory``, a twin of its allocation), not the size
    of the numpy stand-in the host runs."""
    from .budget import check_fits
    from .kws_frontend_memory import kws_frontend_heap_bytes
    from .tflite_info import inspect_tflite

    report = check_fits(inspect_tflite(bytes(model_bytes)), profile)
    c_frontend = profile.get("frontend") == "kws" and frontend_spec is not None
    buffers = {
        "audio_ring": app.ring.nbytes,
        "frontend": kws_frontend_heap_bytes(frontend_spec) if c_frontend else _nbytes(app.frontend),
        "recognizer": _nbytes(app.recognizer),
        "scores": len(app.scores),
    }
    measured = sum(buffers.values())
    total = report.runtime_bytes + measured + report.arena_bytes + (report.model_bytes if report.model_in_heap else 0)
    return {
        "model_bytes": report.model_bytes,
        "model_in_heap": report.model_in_heap,
        "arena_bytes": report.arena_bytes,
        "runtime_bytes": report.runtime_bytes,
        "buffer_bytes": measured,
        "buffers": buffers,
        "profile_buffer_bytes": report.buffer_bytes,
        "total_bytes": total,
        "heap_budget_bytes": report.budget_bytes,
        "heap_bytes": profile["heap_bytes"],
        "fits": total <= report.budget_bytes and report.fits,
        "budget_summary": report.summary(),
    }


def simulate(bundle: str | os.PathLike, wav: str | os.PathLike, board: str = "nucleo", *,
             runner: str = "tflm", verbose: bool = False,
             on_line: Callable[[str], None] | None = None) -> SimulationResult:
    """Run the device loop for ``board`` with ``bundle`` over ``wav``; see the module docstring.

    ``on_line`` receives every event line as the board would print it (e.g.
    ``print`` to stream them, or None to only collect them).
    """
    from kws_kit.boards import load_profile
    from kws_kit.device.kwsrt import config as kconfig
    from kws_kit.device.kwsrt import loop as kloop

    from .budget import arena_for_board
    from .bundle import load_bundle
    from .tflite_info import inspect_tflite

    profile = load_profile(board)  # BoardError listing the known boards
    host_bundle = load_bundle(bundle)  # host-side validation: one-line ModelError
    try:
        device_bundle = kconfig.read_bundle(str(Path(bundle)))  # what the board reads
    except kconfig.ConfigError as exc:
        raise ModelError(str(exc)) from None
    arena = arena_for_board(inspect_tflite(host_bundle.model_bytes), profile)
    try:
        config = kconfig.validate_config(board_config(profile, bundle, arena, verbose))
    except kconfig.ConfigError as exc:
        raise BoardError(str(exc)) from None

    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    fe_per_frame: list[float] = []
    infer_us: list[float] = []

    def observe(t_ms, scores, fe_us, frames, inference_us):
        if frames:
            fe_per_frame.append(fe_us / frames)
        infer_us.append(inference_us)

    model_runner = make_host_runner(device_bundle["model"], runner)
    with tempfile.TemporaryDirectory(prefix="kws-simulate-") as workdir:
        play, note = playable_wav(wav, workdir)
        try:
            app = kloop.build(config, device_bundle, runner=model_runner,
                              frontend=kloop.make_frontend(device_bundle["frontend"], model_runner.input_scale,
                                                           model_runner.input_zero_point, prefer=("ulab",))[0],
                              emit=emit, observer=observe, wav_path=str(play))
        except kconfig.ConfigError as exc:
            raise ModelError(str(exc)) from None
        try:
            app.run()
        finally:
            app.source.close()
        n_samples = app.source.n_samples

    import json

    detections = [json.loads(x) for x in lines if x.startswith('{"ev":"det"')]
    for d in detections:
        d.pop("ev")
    return SimulationResult(
        board=profile["name"],
        runner=getattr(model_runner, "name", type(model_runner).__name__),
        duration_s=n_samples / 16000.0,
        labels=list(device_bundle["labels"]),
        detections=detections,
        inferences=app.inferences,
        frames=app.frames,
        overruns=app.ring.overruns,
        fe_us_per_frame=_stats(fe_per_frame),
        infer_us=_stats(infer_us),
        heap=heap_estimate(profile, host_bundle.model_bytes, app, device_bundle["frontend"]),
        lines=lines,
        note=note,
    )


def format_report(result: SimulationResult) -> str:
    """Human-readable summary for the terminal."""
    out = []
    if result.note:
        out.append(result.note)
    out.append(f"board {result.board}, runner {result.runner}: {result.duration_s:.2f} s of audio, "
               f"{result.inferences} inferences, {result.frames} frames, {result.overruns} overruns")
    if result.detections:
        out.append("detections:")
        for d in result.detections:
            out.append(f"  {d['t_ms'] / 1000:9.3f} s  {d['label']:<12} score {d['score']:.3f}")
    else:
        out.append("no detections")
    fe, inf = result.fe_us_per_frame, result.infer_us
    if fe["mean"] is not None:
        out.append(f"front end per 20 ms hop (host CPU): mean {fe['mean']:.0f} us, p95 {fe['p95']:.0f} us, max {fe['max']:.0f} us")
    if inf["mean"] is not None:
        out.append(f"inference (host {result.runner}): mean {inf['mean'] / 1000:.2f} ms, p95 {inf['p95'] / 1000:.2f} ms, "
                   f"max {inf['max'] / 1000:.2f} ms")
    h = result.heap
    kb = lambda n: f"{n / 1024:.1f} KB"  # noqa: E731
    out.append(
        f"estimated heap on {result.board}: model {kb(h['model_bytes'])}{'' if h['model_in_heap'] else ' (not in heap)'}"
        f" + arena {kb(h['arena_bytes'])} + buffers {kb(h['buffer_bytes'])} (ring {kb(h['buffers']['audio_ring'])}, "
        f"front end {kb(h['buffers']['frontend'])}) + runtime {kb(h['runtime_bytes'])} = {kb(h['total_bytes'])} "
        f"of a {kb(h['heap_budget_bytes'])} budget ({kb(h['heap_bytes'])} heap): "
        + ("fits" if h["fits"] else "DOES NOT FIT")
    )
    return "\n".join(out)
