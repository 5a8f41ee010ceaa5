"""What the kws C module's front end takes from the heap: a Python twin of
``kws_frontend_mem_size`` (device/cmodule/kws/kws_frontend.c).

Budgets and ``kws-kit simulate`` use it for boards whose profile runs the C front end
(``"frontend": "kws"``): there the rolling window is int8 (``kws.Frontend(spec, scale,
zero_point)``, as ``kwsrt.loop.KwsFrontend`` makes it) and a frame's scratch is on the C
stack. tests/test_cmodule.py checks the twin against the C function on every golden spec,
and the struct sizes against gcc and arm-none-eabi-gcc.
"""

from __future__ import annotations

from typing import Any

# sizeof(struct kws_frontend) by pointer size (4: Cortex-M4, 8: 64-bit hosts)
KWS_FRONTEND_STRUCT_BYTES = {4: 124, 8: 184}
# KWS_FRONTEND_STACK_BYTES: a frame's scratch up to this size is on the C stack
KWS_FRONTEND_STACK_BYTES = 4096
# what MicroPython adds on a 32-bit port (GC blocks of 16 bytes): the kws.Frontend object
# (base, mem pointer and size, handle, n_frames, n_coeffs: 6 words), KwsFrontend's int8
# window (bytearray object + data) and the KwsFrontend instance with its 6 attributes
# (128 B, measured with gc.mem_alloc in the 32-bit unix build of docs/runtime.md)
_GC_BLOCK = 16
_KWSFRONTEND_INSTANCE_BYTES = 128


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def frame_scratch_bytes(spec: dict[str, Any]) -> int:
    """Bytes one frame needs while it is computed (FFT buffer, power, log-mel, coefficients)."""
    tables = spec["tables"]
    used = max((s + len(w) for s, w in zip(tables["mel_starts"], tables["mel_weights"]) if w), default=0)
    return 4 * (spec["n_fft"] + used + 1 + spec["n_mels"] + spec["n_coeffs"])


def kws_frontend_mem_bytes(spec: dict[str, Any], pointer_bytes: int = 4, int8_frames: bool = True,
                           stack_bytes: int = KWS_FRONTEND_STACK_BYTES) -> int:
    """``kws_frontend_mem_size`` for a frontend.json dict (spec fields + tables)."""
    n_mels, n_coeffs, wl, n_fft = spec["n_mels"], spec["n_coeffs"], spec["window_length"], spec["n_fft"]
    n_frames = 1 + (spec["clip_samples"] - wl) // spec["hop_length"]
    n_weights = sum(len(w) for w in spec["tables"]["mel_weights"])
    scratch = frame_scratch_bytes(spec)
    size = _align8(KWS_FRONTEND_STRUCT_BYTES[pointer_bytes]) + 8
    size += _align8(4 * (wl // 2 + 1))
    size += _align8(4 * (n_fft // 4 + 1))
    size += 0 if scratch <= stack_bytes else _align8(scratch)
    size += 2 * _align8(2 * n_mels)
    size += _align8(4 * n_weights)
    if spec["kind"] != "logmel":
        size += _align8(4 * n_coeffs * n_mels)
    size += _align8(2 * wl)
    size += _align8((1 if int8_frames else 4) * n_frames * n_coeffs)
    return size


def kws_frontend_heap_bytes(spec: dict[str, Any]) -> int:
    """Heap the board's C front end holds on a 32-bit port: its memory, the ``kws.Frontend``
    object, and ``KwsFrontend`` with its int8 window."""
    n_frames = 1 + (spec["clip_samples"] - spec["window_length"]) // spec["hop_length"]
    mem = _up(kws_frontend_mem_bytes(spec, 4), _GC_BLOCK)
    obj = _up(6 * 4, _GC_BLOCK)
    window = _up(n_frames * spec["n_coeffs"], _GC_BLOCK) + _up(4 * 4, _GC_BLOCK)
    return mem + obj + window + _KWSFRONTEND_INSTANCE_BYTES
