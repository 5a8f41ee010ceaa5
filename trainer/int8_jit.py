"""Compiled loops for the channel-major int8 engine (:mod:`kws_kit.int8_batch`), when numba is installed.

numba comes with librosa (a kws-kit dependency). The numpy kernels of
``int8_batch`` spend most of their time in elementwise passes: the exact
float64 requantisation (five to seven passes over every activation), ADD's index
arithmetic and table lookup, and the 10x wasted multiply-adds of a depthwise
convolution written as a band-matrix product. Here each of them is one loop in
plain integer arithmetic, the same operations as TFLite Micro's reference
kernels (``int8ops`` on the board runtime):

* :func:`requantize`: MultiplyByQuantizedMultiplier(acc + bias) + zero point,
  clamped, for a right shift (or none): SaturatingRoundingDoublingHighMul as
  ``(x * m + 2**30) >> 31`` and RoundingDivideByPOT as
  ``(x + nudge - (x < 0)) >> r``, on int64 (``|x| < 2**31``, ``m < 2**31``:
  the product fits). Accumulators arrive as floats holding exact integers.
* :func:`depthwise`: DEPTHWISE_CONV_2D whose taps are shifts along the
  positions (temporal k x 1 kernels, stride 1) on uint8 (int8 + 128)
  activations, summed in int32, then requantised, in one pass over the output;
  it can also write the centred float32 input of the pointwise convolution that
  alone reads it. (Other layouts keep the numpy band-matrix product: a compiled gather was
  2.4x slower than BLAS on ds_cnn_s's 3x3 taps.)
* :func:`add_table`: ADD through the exact 256 x 256 table.

Everything is integer arithmetic, so the result does not depend on how the
compiler orders or vectorises it. ``KWS_KIT_NO_JIT=1`` turns this module off
(the numpy kernels run instead). Compiled code is cached on disk by numba
(``cache=True``): the first use on a machine compiles for a few seconds, later
processes load it.
"""

from __future__ import annotations

import numpy as np

from . import jit

AVAILABLE = jit.enabled()


def _njit(fn):
    return jit.njit(fn) if AVAILABLE else fn


@_njit
def _requantize_value(x, mult, right, nudge, out_zp, lo, hi):
    x = (x * mult + (1 << 30)) >> 31  # SaturatingRoundingDoublingHighMul (mult > 0)
    if x < 0 and right > 0:
        x = x + nudge - 1
    else:
        x = x + nudge
    x = (x >> right) + out_zp
    if x < lo:
        x = lo
    elif x > hi:
        x = hi
    return x + 128


@_njit
def _requantize(acc, bias, mult, right, out_zp, lo, hi, out):
    channels, m = acc.shape
    for c in range(channels):
        b, mc, r = bias[c], mult[c], right[c]
        nudge = (np.int64(1) << r) >> 1
        for i in range(m):
            x = np.int64(acc[c, i]) + b
            out[c, i] = _requantize_value(x, mc, r, nudge, out_zp, lo, hi)


@_njit
def _depthwise_shifts(x, source, zp, weights, offsets, bias, mult, right, out_zp, lo, hi, centre, out):
    """Taps that are shifts along the positions: output p reads input p + offsets[t] when inside.

    int32 sums (the caller checks the bound: taps * 255 * 128 + |bias| < 2**31). The
    loops run over slices from 0 so numba needs no negative-index handling and
    vectorises them (3x faster than indexing with p + o).
    """
    channels, n, p_out = out.shape
    p_in = x.shape[2]
    taps = offsets.shape[0]
    centred = np.empty(p_in, dtype=np.int32)
    acc = np.empty(p_out, dtype=np.int32)
    z = np.int32(zp)
    for c in range(channels):
        s = source[c]
        b, mc, r = bias[c], mult[c], right[c]
        nudge = (np.int64(1) << r) >> 1
        b32 = np.int32(b)
        for i in range(n):
            row = x[s, i]
            for p in range(p_in):
                centred[p] = np.int32(row[p]) - z
            acc[:] = b32
            for t in range(taps):
                w = np.int32(weights[t, c])
                o = offsets[t]
                start = max(0, -o)
                end = min(p_out, p_in - o)
                if end <= start:
                    continue
                a = acc[start:end]
                src = centred[start + o:end + o]
                for p in range(end - start):
                    a[p] += src[p] * w
            orow = out[c, i]
            for p in range(p_out):
                orow[p] = _requantize_value(np.int64(acc[p]), mc, r, nudge, out_zp, lo, hi) - centre


@_njit
def _add_table(a, b, table, out):
    for i in range(a.shape[0]):
        out[i] = table[(np.int64(a[i]) << 8) | np.int64(b[i])]


class Requant:
    """Per-channel constants of a requantisation the loops here can do (no left shift, multipliers > 0)."""

    def __init__(self, bias, multipliers, shifts, out_zp, lo, hi):
        shifts = np.asarray(shifts, dtype=np.int64)
        self.ok = AVAILABLE and bool(np.all(shifts <= 0)) and bool(np.all(np.asarray(multipliers) > 0))
        self.bias = np.asarray(bias, dtype=np.int64).copy()
        self.mult = np.asarray(multipliers, dtype=np.int64).copy()
        self.right = -shifts
        self.out_zp, self.lo, self.hi = int(out_zp), int(lo), int(hi)

    def args(self):
        return self.bias, self.mult, self.right, self.out_zp, self.lo, self.hi


def requantize(acc, rq: Requant, out):
    """``acc``: (C, M) exact integers (float32, float64 or int); ``out``: (C, M) uint8 = int8 + 128."""
    _requantize(acc, *rq.args(), out)
    return out


def depthwise(x, source, zp, weights, rq: Requant, out, offsets, centre: int = 0):
    """Depthwise convolution + requantisation, channel-major uint8 in, for taps that
    are shifts along the positions: output position p reads input p + offsets[t] (zero
    padding outside), e.g. a temporal k x 1 kernel with stride 1 and "same" padding.

    ``x``: (C_in, N, P) uint8 (int8 + 128); ``source[c]``: the input channel
    of output channel c (depth multiplier); ``zp``: the input zero point + 128;
    ``weights``: (taps, C_out) int64; ``offsets``: (taps,) int64. The caller
    checks that the sums fit int32 (``taps * 255 * 128 + |bias| < 2**31``).
    ``out``: (C_out, N, P) uint8 (int8 + 128), or float32 with ``centre`` = the
    next layer's input zero point + 128: the next convolution's centred input
    ``x - zp``, written directly (exact small integers).
    """
    _depthwise_shifts(x, source, zp, weights, offsets, *rq.args(), centre, out)
    return out


def add_table(a, b, table):
    """``table[a * 256 + b]`` elementwise for uint8 arrays of one shape."""
    out = np.empty(a.shape, dtype=np.uint8)
    _add_table(a.reshape(-1), b.reshape(-1), table, out.reshape(-1))
    return out
