"""Batched int8 TFLite engine: many inputs at once, bit-identical to TensorFlow Lite Micro.

TFLite Micro runs one input per invoke (~2.8 ms for the default model), far
too slow to score the ~14,400 windows of an hour of audio. This engine runs
the same integer arithmetic on a leading batch dimension with vectorised
numpy. The model is parsed by the board runtime's reader
(``kws_kit.device.kwsrt.tflite``) and every constant (per-channel
multipliers and shifts, bias corrections, padding, activation bounds, pooling
counts, MEAN's folded multiplier, SOFTMAX's input scaling) is prepared by the
board runtime's own kernels (``kws_kit.device.kwsrt.int8ops``), which are
tested bit-identical to TFLite Micro op by op; only the per-inference
arithmetic is new here.

Exactness:

* Convolutions and FULLY_CONNECTED sum int8 products in float32 when every
  partial sum is provably below 2**24 (``taps * 128 * 128 < 2**24``), else in
  float64 (below 2**53); integers in that range are exact in any summation
  order, so BLAS may reorder or fuse freely.
* Requantisation (MultiplyByQuantizedMultiplier) runs in int64 with the same
  two roundings as TFLite: SaturatingRoundingDoublingHighMul of an int32 by a
  Q31 multiplier equals ``(a * m + 2**30) >> 31`` (the nudge of the negative
  branch and truncation toward zero combine into one floor shift), and
  RoundingDivideByPOT equals ``(x + 2**(r-1) - (x < 0)) >> r`` for ``r > 0``.
  The int32 wrap of the accumulator is emulated whenever its bound could
  leave int32.
* SOFTMAX is the gemmlowp fixed-point path (exp on negative values, the
  Newton-Raphson reciprocal) on int64 arrays, one row per input.

Layout: convolutions, ADD and spatial MEAN run channel-major (``(C, N,
positions)`` uint8 holding int8 + 128): a depthwise convolution is one batched
matrix product with a band matrix per channel, a convolution one matrix
product, and the requantisation's per-channel constants broadcast over long
rows (:class:`ChannelRequantizer`, the exact float64 floor of
:class:`FloatRequantizer`). About 3x (tds_resnet) to 5x (ds_cnn_s) faster than NHWC
in bench/bench_stream_eval.py (docs/evaluation.md, "Speed");
layers it cannot take exactly (a left shift, sums beyond float64, images too
large for a band matrix) run the NHWC kernels, which are kept and tested too
(``channel_major=False``).

Where numba is installed (it comes with librosa), the channel-major
requantisation, the depthwise convolutions with temporal (shift) taps and ADD's
table lookup run as compiled integer loops instead (:mod:`kws_kit.int8_jit`,
the same arithmetic; ``jit=False`` or ``KWS_KIT_NO_JIT=1`` for numpy only):
another 2x on tds_resnet's stream windows (docs/evaluation.md, "Speed").
"""

from __future__ import annotations

import functools

import numpy as np

from . import int8_jit
from .device.kwsrt import int8ops, tflite
from .device.kwsrt.runners import SUPPORTED_OPS
from .errors import ModelError

DEFAULT_CHUNK = 128
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53
IM2COL_BYTES = 64 << 20  # above this the convolution accumulates tap by tap instead


# --------------------------------------------------------------------------- #
# Vectorised gemmlowp / TFLite fixed-point primitives on int64 arrays
# --------------------------------------------------------------------------- #


def wrap32(x):
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul of int32 values held in int64 arrays."""
    a = np.asarray(a, dtype=np.int64)
    high = (a * b + (1 << 30)) >> 31
    return np.where((a == INT32_MIN) & (np.asarray(b) == INT32_MIN), INT32_MAX, high)


def rdbpot(x, exponent):
    """RoundingDivideByPOT (round half away from zero), ``exponent`` >= 0 scalar or array."""
    exponent = np.asarray(exponent, dtype=np.int64)
    nudge = (np.int64(1) << exponent) >> 1
    return (x + nudge - ((x < 0) & (exponent > 0))) >> exponent


def _sat_shift_left(x, exponent):
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


def _exp_on_interval(a):
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    poly = rdbpot(wrap32(srdhm(wrap32(rdbpot(x4, 2) + x3), 715827883) + x2), 1)
    return wrap32(1895147668 + srdhm(1895147668, wrap32(x + poly)))


def exp_on_negative_values_q5(a):
    """gemmlowp exp_on_negative_values with 5 integer bits (what SOFTMAX uses), Q0.31 out."""
    integer_bits, frac_bits = 5, 26
    one_quarter = 1 << (frac_bits - 2)
    a_mod = wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval(_sat_shift_left(a_mod, integer_bits))
    remainder = wrap32(a_mod - a)
    for exponent, multiplier in int8ops._EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac_bits + exponent))) != 0
            result = np.where(bit, srdhm(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x(a):
    s = a + INT32_MAX  # RoundingHalfSum with One(): Python ints, no wrap
    h = s + np.where(s >= 0, 1, -1)
    half_denominator = np.where(h >= 0, h // 2, -((-h) // 2))
    x = wrap32(1515870810 + srdhm(half_denominator, -1010580540))
    one_q2 = 1 << 29
    for _ in range(3):
        hdx = srdhm(half_denominator, x)
        x = wrap32(x + _sat_shift_left(srdhm(x, wrap32(one_q2 - hdx)), 2))
    return _sat_shift_left(x, 1)


def bit_length(x):
    """Bit length of non-negative int64 values below 2**53."""
    return np.frexp(x.astype(np.float64))[1].astype(np.int64)


def get_reciprocal(x, integer_digits):
    u = x & 0xFFFFFFFF
    headroom_plus_one = 32 - bit_length(u)
    shifted_minus_one = wrap32((u << headroom_plus_one) - (1 << 31))
    return _one_over_one_plus_x(shifted_minus_one), integer_digits - headroom_plus_one


class Requantizer:
    """Vectorised MultiplyByQuantizedMultiplier(x, m, shift) + zp, clamped to [lo, hi], as int8.

    ``m``/``shift`` are scalars or per-channel vectors (broadcast on the last
    axis). ``bound`` is the largest possible |x|: the int32 wrap TFLite's
    accumulator would undergo is only emulated when it could happen.
    """

    def __init__(self, multipliers, shifts, out_zp=0, lo=-128, hi=127, bound=None):
        m = np.asarray(multipliers, dtype=np.int64)
        shift = np.asarray(shifts, dtype=np.int64)
        self.m = m
        self.left = np.maximum(shift, 0)
        self.right = np.maximum(-shift, 0)
        self.any_left = bool(np.any(self.left))
        max_left = int(np.max(self.left)) if self.left.size else 0
        self.wrap = bound is None or bound * (1 << max_left) > INT32_MAX
        self.nudge = (np.int64(1) << self.right) >> 1
        self.all_right = bool(np.all(self.right > 0))
        self.out_zp, self.lo, self.hi = int(out_zp), int(lo), int(hi)

    def __call__(self, x):
        """``x``: int64 array (modified in place); returns int8 of the same shape."""
        if self.any_left:
            x <<= self.left
        if self.wrap:
            x = wrap32(x)
        x *= self.m
        x += 1 << 30
        x >>= 31  # SaturatingRoundingDoublingHighMul (m is never INT32_MIN)
        negative = x < 0
        x += self.nudge
        if self.all_right:
            x -= negative
        else:
            x -= negative & (self.right > 0)
        x >>= self.right
        x += self.out_zp
        np.clip(x, self.lo, self.hi, out=x)
        return x.astype(np.int8)


class FloatRequantizer:
    """The same function as :class:`Requantizer` with the correction folded in, in fewer float64 passes.

    With no left shift and no int32 wrap, the two roundings of
    MultiplyByQuantizedMultiplier(acc + corr) combine into one floor: for
    ``P = (acc + corr) * m + 2**30`` and right shift ``r``,
    ``result = floor((P + H - 2**31 * [P < 0 and r > 0]) / 2**(31 + r))`` with
    ``H = 2**(r - 1) * 2**31`` (``H = 0`` for ``r = 0``), and ``P < 0`` exactly
    when ``acc < T = -floor((2**30 + corr * m) / m)``. Computed as
    ``floor(acc * a + b) - (acc < T) * 2**-r`` with ``a = m / 2**S``,
    ``b = (corr * m + 2**30 + H + zp * 2**S) / 2**S``: every value is an
    integer times ``2**-S`` with a numerator below 2**53, so float64 is exact.
    ``usable()`` checks that bound; else the int64 path is used.
    """

    def __init__(self, correction, multipliers, shifts, out_zp, lo, hi, acc_bound):
        self.ok = False
        corr = [int(c) for c in np.broadcast_to(correction, np.shape(multipliers))]
        mults = [int(m) for m in multipliers]
        shifts = [int(v) for v in shifts]
        if any(v > 0 for v in shifts):
            return
        a, b, t, adj = [], [], [], []
        for c, m, sh in zip(corr, mults, shifts):
            r = -sh
            big_s = 31 + r
            h = (1 << (r - 1)) << 31 if r > 0 else 0
            numerator = abs(c * m) + (1 << 30) + h + abs(out_zp) * (1 << big_s)
            if (acc_bound * m) + numerator >= FLOAT64_EXACT or abs(acc_bound + abs(c)) > INT32_MAX or m == 0:
                return
            a.append(m / 2.0 ** big_s)
            b.append((c * m + (1 << 30) + h + out_zp * (1 << big_s)) / 2.0 ** big_s)
            t.append(-(((1 << 30) + c * m) // m))
            adj.append(2.0 ** -r if r > 0 else 0.0)
        self.a, self.b = np.array(a), np.array(b)
        self.t, self.adj = np.array(t, dtype=np.float64), np.array(adj)
        self.lo, self.hi = float(lo), float(hi)
        self.ok = True

    def __call__(self, acc):
        """``acc``: float array of exact integers (..., channels); returns int8."""
        v = acc * self.a
        v += self.b
        np.subtract(v, self.adj, out=v, where=acc < self.t)
        np.floor(v, out=v)
        np.clip(v, self.lo, self.hi, out=v)
        return v.astype(np.int8)


def _requantizer(kernel_requant, bound):
    r = kernel_requant
    return Requantizer(r.mults, r.shifts, r.out_zp, r.lo, r.hi, bound)


def _float_type(products):
    """float32 when every partial sum of ``products`` int8 x int8 terms is exact in it, else float64."""
    bound = products * 128 * 128
    if bound < FLOAT32_EXACT:
        return np.float32
    if bound < FLOAT64_EXACT:
        return np.float64
    raise ModelError(f"a layer sums {products} products: too many for exact accumulation")


# --------------------------------------------------------------------------- #
# Ops over a leading batch dimension; activations are (N, numel) int8 arrays
# --------------------------------------------------------------------------- #


class _Conv:
    def __init__(self, op, tensors, depthwise):
        k = int8ops.Conv(op, tensors, depthwise)
        self.k = k
        self.depthwise = depthwise
        taps = k.kh * k.kw
        self.n_taps = taps
        if depthwise:
            self.dtype = _float_type(taps)
            self.taps = [t.astype(self.dtype) for t in k.taps]
            products = taps
        else:
            self.dtype = _float_type(taps * k.cin)
            self.weights = np.stack(k.taps).reshape(taps * k.cin, k.cout).astype(self.dtype)
            products = taps * k.cin
        self.correction = k.requant.correction
        bound = products * 128 * 128 + int(np.max(np.abs(self.correction)))
        self.requant = _requantizer(k.requant, bound)
        r = k.requant
        self.fast = FloatRequantizer(r.correction, r.mults, r.shifts, r.out_zp, r.lo, r.hi, products * 128 * 128)
        # no padding needed: the padded image is the image itself
        self.unpadded = k.top == 0 and k.left == 0 and k.rows == k.h and k.cols == k.w

    def _padded(self, x):
        k = self.k
        n = len(x)
        c = x.shape[-1]
        xp = np.empty((n, k.rows, k.cols, c), dtype=self.dtype)
        if not self.unpadded:
            xp.fill(k.in_zp)
        xp[:, k.top:k.top + k.h, k.left:k.left + k.w, :] = x
        return xp

    def run(self, x):
        k = self.k
        n = len(x)
        x = x.reshape(n, k.h, k.w, k.cin)
        if k.mult > 1:
            x = x[..., k.expand]
        rh, rw = (k.oh - 1) * k.sh + 1, (k.ow - 1) * k.sw + 1
        if not self.depthwise and k.kh == 1 and k.kw == 1 and self.unpadded and k.sh == 1 and k.sw == 1:
            acc = x.reshape(-1, k.cin).astype(self.dtype) @ self.weights  # pointwise: no im2col needed
        else:
            xp = self._padded(x)
            acc = self._depthwise(xp, rh, rw) if self.depthwise else self._conv(xp, rh, rw)
        acc = acc.reshape(n, k.oh * k.ow, k.cout)
        if self.fast.ok:
            return self.fast(acc).reshape(n, -1)
        acc = acc.astype(np.int64)
        acc += self.correction
        return self.requant(acc).reshape(n, -1)

    def _slices(self, rh, rw):
        k = self.k
        for ky in range(k.kh):
            for kx in range(k.kw):
                y0, x0 = ky * k.dh, kx * k.dw
                yield (slice(None), slice(y0, y0 + rh, k.sh), slice(x0, x0 + rw, k.sw), slice(None))

    def _depthwise(self, xp, rh, rw):
        acc = None
        for s, tap in zip(self._slices(rh, rw), self.taps):
            term = xp[s] * tap
            if acc is None:
                acc = term
            else:
                acc += term
        return acc

    def _conv(self, xp, rh, rw):
        k = self.k
        n = len(xp)
        width = self.n_taps * k.cin
        if n * k.oh * k.ow * width * xp.itemsize <= IM2COL_BYTES:
            cols = np.empty((n, k.oh, k.ow, width), dtype=self.dtype)
            for t, s in enumerate(self._slices(rh, rw)):
                cols[..., t * k.cin:(t + 1) * k.cin] = xp[s]
            return cols.reshape(-1, width) @ self.weights
        acc = None
        for t, s in enumerate(self._slices(rh, rw)):
            term = xp[s].reshape(-1, k.cin) @ self.weights[t * k.cin:(t + 1) * k.cin]
            if acc is None:
                acc = term
            else:
                acc += term
        return acc


class _FullyConnected:
    def __init__(self, op, tensors):
        k = int8ops.FullyConnected(op, tensors)
        self.k = k
        self.dtype = _float_type(k.depth)
        self.weights = k.wt.astype(self.dtype)
        self.correction = k.requant.correction
        bound = k.depth * 256 * 256 + int(np.max(np.abs(self.correction)))  # weight zero point may widen w
        self.requant = _requantizer(k.requant, bound)

    def run(self, x):
        k = self.k
        n = len(x)
        rows = x.reshape(n * k.batch, k.depth).astype(self.dtype)
        acc = (rows @ self.weights).astype(np.int64)
        if k.w_zp:
            acc -= k.w_zp * rows.sum(axis=1, dtype=np.float64).astype(np.int64)[:, None]
        acc += self.correction
        return self.requant(acc).reshape(n, -1)


class _Pool:
    def __init__(self, op, tensors, average):
        self.k = int8ops.Pool(op, tensors, average)

    def run(self, x):
        k = self.k
        n = len(x)
        x = x.reshape(n, k.h, k.w, k.c)
        dtype = np.float32 if k.average else np.int8  # float32 sums of <= 2**16 int8 values are exact
        xp = np.full((n, k.rows, k.cols, k.c), 0 if k.average else -128, dtype=dtype)
        xp[:, k.top:k.top + k.h, k.left:k.left + k.w, :] = x
        rh, rw = (k.oh - 1) * k.sh + 1, (k.ow - 1) * k.sw + 1
        acc = None
        for ky in range(k.fh):
            for kx in range(k.fw):
                patch = xp[:, ky:ky + rh:k.sh, kx:kx + rw:k.sw, :]
                if acc is None:
                    acc = patch.copy()
                elif k.average:
                    acc += patch
                else:
                    np.maximum(acc, patch, out=acc)
        if not k.average:
            return np.clip(acc, k.lo, k.hi).reshape(n, -1)
        a = acc.reshape(n, k.oh * k.ow, k.c).astype(np.int64)
        counts = k.counts_np  # (positions, 1)
        half = counts // 2
        q = np.where(a > 0, (a + half) // counts, -((half - a) // counts))
        return np.clip(q, k.lo, k.hi).astype(np.int8).reshape(n, -1)


class _Mean:
    def __init__(self, op, tensors):
        k = int8ops.Mean(op, tensors)
        self.k = k
        self.requant = Requantizer(k.mult, k.shift, k.out_zp, -128, 127, bound=k.count * 256)

    def run(self, x):
        k = self.k
        n = len(x)
        s = x.reshape((n,) + tuple(k.shape)).astype(np.int64)
        s = s.sum(axis=tuple(a + 1 for a in k.axes))
        s = s.reshape(n, -1) - k.count * k.in_zp
        return self.requant(s)


class _Add:
    """Same-shape int8 ADD: the output depends only on the (a, b) pair, so it is a 256 x 256 table
    filled once with the exact arithmetic below."""

    def __init__(self, op, tensors):
        k = int8ops.Add(op, tensors)
        self.k = k
        self.ma, self.mb, self.mo = (Requantizer(m, s, bound=INT32_MAX) for m, s in
                                     ((k.ma, k.sha), (k.mb, k.shb), (k.mo, k.sho)))
        values = np.arange(-128, 128, dtype=np.int8)
        self.table = self.compute(values[:, None], values[None, :]).reshape(-1)

    def run(self, a, b):
        index = a.view(np.uint8).astype(np.intp)  # a + 128 in two's complement order, shifted below
        index ^= 0x80
        index <<= 8
        index |= b.view(np.uint8) ^ np.uint8(0x80)
        return self.table[index]

    def compute(self, a, b):
        k = self.k
        sa = _mbqm(self.ma, (a.astype(np.int64) - k.zpa) << 20)
        sb = _mbqm(self.mb, (b.astype(np.int64) - k.zpb) << 20)
        out = _mbqm(self.mo, sa + sb) + k.zpo
        return np.clip(out, k.lo, k.hi).astype(np.int8)


def _mbqm(r: Requantizer, x):
    """MultiplyByQuantizedMultiplier without the output stage (for ADD's intermediate sums)."""
    if r.any_left:
        x = x << r.left
    if r.wrap:
        x = wrap32(x)
    return rdbpot((x * r.m + (1 << 30)) >> 31, r.right)


class _Softmax:
    def __init__(self, op, tensors):
        k = int8ops.Softmax(op, tensors)
        self.k = k

    def run(self, x):
        k = self.k
        n = len(x)
        v = x.reshape(n * k.rows, k.depth).astype(np.int64)
        diff = v - v.max(axis=1, keepdims=True)
        valid = diff >= k.diff_min
        e = exp_on_negative_values_q5(srdhm(wrap32(diff << k.shift), k.mult))
        total = wrap32(np.where(valid, rdbpot(e, 12), 0).sum(axis=1, keepdims=True))
        scale, bits_over_unit = get_reciprocal(total, 12)
        out = rdbpot(srdhm(scale, e), bits_over_unit + 31 - 8) - 128
        out = np.where(valid, np.clip(out, -128, 127), -128)
        return out.astype(np.int8).reshape(n, -1)


class _Reshape:
    def __init__(self, op, tensors):
        int8ops.Reshape(op, tensors)  # validates element count and quantisation

    def run(self, x):
        return x


# --------------------------------------------------------------------------- #
# Channel-major kernels: activations (C, N, positions) held as uint8 = int8 + 128
# --------------------------------------------------------------------------- #
#
# In NHWC every per-channel constant broadcasts over a 40-to-64-element inner
# loop and a depthwise tap is one short multiply-add per channel, so numpy runs
# at a few ns per value. Channel-major, a depthwise convolution is one batched
# matrix product per channel with a band matrix (positions_in x positions_out,
# the taps on its diagonals: padding, stride and dilation are in the matrix), a
# convolution is one matrix product, and every per-channel constant broadcasts
# over a row of N * positions values. Activations are kept as uint8 (int8 + 128)
# so the requantisation floors by truncating non-negative values and ADD's
# table is indexed directly.

TAIL_NUMEL = 256  # a graph tail whose input has at most this many values per row ...
TAIL_CHUNK = 8192  # ... runs on this many rows at once
REQUANT_BLOCK = 1 << 15  # float64 values per requantisation block (256 KB)
MAX_BAND_POSITIONS = 256  # larger images: the band matrix wastes too much, NHWC kernel instead


def to_nhwc(x):
    """(C, N, P) uint8 channel-major -> (N, P * C) int8."""
    c, n, p = x.shape
    out = np.empty((n, p, c), dtype=np.uint8)
    np.copyto(out, x.transpose(1, 2, 0))
    out ^= np.uint8(0x80)
    return out.view(np.int8).reshape(n, p * c)


def to_channel_major(x, positions, channels):
    """(N, P * C) int8 -> (C, N, P) uint8."""
    n = len(x)
    out = np.empty((channels, n, positions), dtype=np.uint8)
    np.copyto(out, x.view(np.uint8).reshape(n, positions, channels).transpose(2, 0, 1))
    out ^= np.uint8(0x80)
    return out


class ChannelRequantizer:
    """MultiplyByQuantizedMultiplier(acc + bias) + zp, clamped, for exact integer ``acc`` held in floats,
    channel-major, written as uint8 (int8 + 128).

    The float64 form of :class:`FloatRequantizer` (exact: every value is a
    multiple of ``2**-S`` with a numerator below 2**53) with the +128 offset in
    ``b``, so ``floor`` and the cast are one truncation of a value clipped to
    ``[lo + 128, hi + 128]`` (non-negative, so truncation is floor). The
    negative-branch adjustment is skipped when ``lo >= zp``: it only lowers
    results that are already at most ``zp`` (``P < 0`` gives a non-positive
    rounded shift with or without it), which the clamp lifts to ``lo``.
    """

    def __init__(self, bias, multipliers, shifts, out_zp, lo, hi, acc_bound):
        self.ok = False
        shifts = [int(v) for v in shifts]
        mults = [int(m) for m in multipliers]
        bias = [int(c) for c in np.broadcast_to(bias, (len(mults),))]
        if any(v > 0 for v in shifts) or any(m <= 0 for m in mults):
            return
        a, b, adj = [], [], []
        for c, m, sh in zip(bias, mults, shifts):
            r = -sh
            big_s = 31 + r
            h = (1 << (r - 1)) << 31 if r > 0 else 0
            numerator = abs(c * m) + (1 << 30) + h + (abs(out_zp) + 128) * (1 << big_s)
            if acc_bound * m + numerator >= FLOAT64_EXACT or acc_bound + abs(c) > INT32_MAX:
                return
            a.append(m / 2.0 ** big_s)
            b.append((c * m + (1 << 30) + h + (out_zp + 128) * (1 << big_s)) / 2.0 ** big_s)
            adj.append(2.0 ** -r if r > 0 else 0.0)
        self.a = np.array(a)[:, None]
        self.b = np.array(b)[:, None]
        self.adj = np.array(adj)[:, None]
        self.need_adj = int(lo) < int(out_zp) and any(adj)
        self.negative_below = out_zp + 128 + 0.5
        self.lo, self.hi = float(lo + 128), float(hi + 128)
        self.ok = True

    def __call__(self, acc, out):
        """``acc``: (C, M) exact integers (float32 or float64); ``out``: (C, M) uint8, filled.

        A few channels at a time, so the float64 temporaries stay in the L2 cache.
        """
        channels, m = acc.shape
        rows = max(1, REQUANT_BLOCK // max(1, m))
        v = np.empty((min(rows, channels), m))
        if self.need_adj:
            below = np.empty(v.shape, dtype=bool)
            lowered = np.empty(v.shape)
        for r0 in range(0, channels, rows):
            r1 = min(channels, r0 + rows)
            vv = v[:r1 - r0]
            np.multiply(acc[r0:r1], self.a[r0:r1], out=vv)
            vv += self.b[r0:r1]
            if self.need_adj:
                # P < 0 exactly when v < zp + 128 + 1/2 (v = (P + H) / 2**S + zp + 128, H / 2**S = 1/2)
                bb, ll = below[:r1 - r0], lowered[:r1 - r0]
                np.less(vv, self.negative_below, out=bb)
                np.subtract(vv, self.adj[r0:r1], out=ll)
                np.copyto(vv, ll, where=bb)
            np.clip(vv, self.lo, self.hi, out=vv)
            np.copyto(out[r0:r1], vv, casting="unsafe")
        return out


def _shift_offsets(idx, p_in, p_out):
    """Per tap, the offset ``o`` when every output position ``p`` reads input ``p + o`` (or the
    padding where that is outside): taps that are plain shifts along the positions (stride 1
    over one spatial axis, e.g. temporal k x 1 kernels). None when some tap is not."""
    if p_in != p_out:
        return None
    pos = np.arange(p_out)
    offsets = []
    for row in idx:
        valid = row >= 0
        if not valid.any():
            return None
        o = int(row[valid][0] - pos[valid][0])
        if not np.array_equal(np.where((pos + o >= 0) & (pos + o < p_in), pos + o, -1), row):
            return None
        offsets.append(o)
    return offsets


def _tap_positions(k):
    """(taps, positions_out) input position of each tap for each output position; -1 in the padding."""
    oy, ox = np.meshgrid(np.arange(k.oh), np.arange(k.ow), indexing="ij")
    idx = []
    for ky in range(k.kh):
        for kx in range(k.kw):
            iy = oy * k.sh + ky * k.dh - k.top
            ix = ox * k.sw + kx * k.dw - k.left
            inside = (iy >= 0) & (iy < k.h) & (ix >= 0) & (ix < k.w)
            idx.append(np.where(inside, iy * k.w + ix, -1).reshape(-1))
    return np.array(idx, dtype=np.intp)


class _ConvCM:
    """CONV_2D / DEPTHWISE_CONV_2D channel-major: TFLite's sum of (x - in_zp) * w + bias.

    The input is centred (``x - in_zp``) so the padding contributes zero and
    is simply left out of the matrices. Every product is at most 255 * 128 in
    magnitude, so sums of fewer than 2**24 / 32640 products are exact in
    float32 (else float64), in any order.
    """

    def __init__(self, nhwc: _Conv, jit: bool = True):
        self.nhwc = nhwc
        k = nhwc.k
        self.k = k
        self.depthwise = nhwc.depthwise
        self.p_in, self.p_out = k.h * k.w, k.oh * k.ow
        taps = k.kh * k.kw
        products = taps if self.depthwise else taps * k.cin
        bound = products * 255 * 128
        self.dtype = np.float32 if bound < FLOAT32_EXACT else np.float64
        idx = _tap_positions(k)
        w = [np.asarray(t, dtype=np.float64) for t in k.taps]  # exact small integers
        if self.depthwise:
            sums = sum(w)
        else:
            sums = sum(t.sum(axis=0) for t in w)
        # int8ops folds the padding into the correction: bias - in_zp * sum(w); take it back out
        bias = [int(c) + k.in_zp * int(s) for c, s in zip(k.requant.correction, sums)]
        r = k.requant
        self.requant = ChannelRequantizer(bias, r.mults, r.shifts, r.out_zp, r.lo, r.hi, bound)
        self.ok = self.requant.ok and bound < FLOAT64_EXACT
        # the compiled integer loops (int8_jit) where numba is there: the same exact function
        self.jit = None
        if jit and self.ok and int8_jit.AVAILABLE:
            rq = int8_jit.Requant(bias, r.mults, r.shifts, r.out_zp, r.lo, r.hi)
            self.jit = rq if rq.ok else None
        self.pointwise = False
        self.jit_depthwise = False
        if self.depthwise:
            offsets = _shift_offsets(idx, self.p_in, self.p_out)
            if self.jit is not None and offsets is not None:
                # taps that are shifts along the positions (temporal k x 1 kernels): one compiled
                # loop. Other layouts (2-D kernels, strides) keep the band matrix product, which
                # BLAS runs faster than a compiled gather (ds_cnn_s: 3x3 taps, 2.4x).
                self.jit_depthwise = True
                self.source = np.asarray(k.expand if k.mult > 1 else np.arange(k.cout), dtype=np.int64)
                self.int_weights = np.stack([t.astype(np.int64) for t in w])  # (taps, cout)
                self.offsets = np.array(offsets, dtype=np.int64)
                return  # no band matrix needed
            if self.p_in > MAX_BAND_POSITIONS:
                self.ok = False
                return
            band = np.zeros((k.cout, self.p_in, self.p_out), dtype=np.float64)
            cols = np.arange(self.p_out)
            for t in range(taps):
                valid = idx[t] >= 0
                band[:, idx[t][valid], cols[valid]] += w[t][:, None]
            self.band = band.astype(self.dtype)
        else:
            self.pointwise = taps == 1 and self.p_in == self.p_out and np.array_equal(idx[0], np.arange(self.p_in))
            self.weights = np.concatenate([t.T for t in w], axis=1).astype(self.dtype)  # (cout, taps * cin)
            self.idx = np.where(idx < 0, self.p_in, idx)  # the padding reads an extra zero column
            self.taps = taps
            # taps that are plain shifts along the positions (stride 1 over one spatial axis, e.g.
            # temporal k x 1 kernels) read slices of a zero-padded copy instead of gathering
            self.shifts = _shift_offsets(idx, self.p_in, self.p_out)
            if self.shifts is not None:
                self.pad = max(0, -min(self.shifts), max(self.shifts))

    def run(self, x, feeds: "_ConvCM | None" = None):
        """``x``: (cin, N, p_in) uint8 -> (cout, N, p_out) uint8.

        A pointwise convolution also takes ``x`` as the float32 centred input
        ``x - (in_zp + 128)``: what a compiled depthwise convolution writes for
        ``feeds`` (the pointwise convolution that alone reads its output) when asked.
        """
        k = self.k
        n = x.shape[1]
        zp = k.in_zp + 128
        if self.jit_depthwise:
            if feeds is not None:
                out = np.empty((k.cout, n, self.p_out), dtype=np.float32)
                return int8_jit.depthwise(x, self.source, zp, self.int_weights, self.jit, out, self.offsets,
                                          centre=feeds.k.in_zp + 128)
            out = np.empty((k.cout, n, self.p_out), dtype=np.uint8)
            return int8_jit.depthwise(x, self.source, zp, self.int_weights, self.jit, out, self.offsets)
        if self.pointwise and x.dtype == np.float32:
            acc = self.weights @ x.reshape(k.cin, n * self.p_in)  # already centred
        elif self.depthwise:
            src = x[k.expand] if k.mult > 1 else x
            xf = np.subtract(src, zp, dtype=self.dtype)
            acc = np.matmul(xf, self.band)  # (cout, N, p_out)
        elif self.pointwise:
            xf = np.subtract(x, zp, dtype=self.dtype)
            acc = self.weights @ xf.reshape(k.cin, n * self.p_in)
        elif self.shifts is not None:
            pad = self.pad
            xf = np.zeros((k.cin, n, self.p_in + 2 * pad), dtype=self.dtype)
            np.subtract(x, zp, out=xf[:, :, pad:pad + self.p_in], dtype=self.dtype)
            cols = np.empty((self.taps, k.cin, n, self.p_out), dtype=self.dtype)
            for t, off in enumerate(self.shifts):
                np.copyto(cols[t], xf[:, :, pad + off:pad + off + self.p_out])
            acc = self.weights @ cols.reshape(self.taps * k.cin, n * self.p_out)
        else:
            xf = np.zeros((k.cin, n, self.p_in + 1), dtype=self.dtype)
            np.subtract(x, zp, out=xf[:, :, :self.p_in], dtype=self.dtype)
            cols = np.empty((self.taps, k.cin, n, self.p_out), dtype=self.dtype)
            for t in range(self.taps):
                np.take(xf, self.idx[t], axis=2, out=cols[t])
            acc = self.weights @ cols.reshape(self.taps * k.cin, n * self.p_out)
        out = np.empty((k.cout, n, self.p_out), dtype=np.uint8)
        if self.jit is not None:
            int8_jit.requantize(acc.reshape(k.cout, n * self.p_out), self.jit, out.reshape(k.cout, n * self.p_out))
        else:
            self.requant(acc.reshape(k.cout, n * self.p_out), out.reshape(k.cout, n * self.p_out))
        return out


class _AddCM:
    """ADD of two channel-major uint8 tensors: the same exact table, indexed by (a + 128) * 256 + b + 128."""

    def __init__(self, nhwc: _Add, jit: bool = True):
        self.table = nhwc.table.view(np.uint8) ^ np.uint8(0x80)
        self.jit = jit and int8_jit.AVAILABLE

    def run(self, a, b):
        if self.jit:
            return int8_jit.add_table(a, b, self.table)
        index = np.left_shift(a, 8, dtype=np.uint16)
        index |= b
        return np.take(self.table, index)


class _MeanCM:
    """MEAN over the spatial axes of a 4-D tensor, channel-major in, (N, C) int8 out."""

    def __init__(self, nhwc: _Mean):
        self.nhwc = nhwc
        k = nhwc.k
        self.ok = len(k.shape) == 4 and sorted(k.axes) == [1, 2]

    def run(self, x):
        k = self.nhwc.k
        s = x.sum(axis=2, dtype=np.int64).T  # (N, C), exact
        s = s - k.count * (k.in_zp + 128)
        return self.nhwc.requant(np.ascontiguousarray(s))


# --------------------------------------------------------------------------- #
# The engine
# --------------------------------------------------------------------------- #


class BatchInterpreter:
    """Runs an int8 TFLite model on ``(N, ...)`` int8 inputs; outputs equal TFLite Micro's.

    ``chunk`` inputs go through the whole graph at a time, which bounds the
    temporaries (im2col, int64 accumulators) to a few tens of MB.
    """

    def __init__(self, model_bytes: bytes, chunk: int = DEFAULT_CHUNK, channel_major: bool = True,
                 jit: bool = True):
        try:
            model = tflite.parse(bytes(model_bytes))
        except ValueError as exc:
            raise ModelError(f"cannot read the TFLite model: {exc}") from None
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ModelError(f"expected one input and one output, the model has {len(model.inputs)} "
                             f"and {len(model.outputs)}")
        unsupported = sorted({op.name for op in model.operators} - set(SUPPORTED_OPS))
        if unsupported:
            raise ModelError(f"the batched int8 engine does not support {', '.join(unsupported)}")
        tensors = model.tensors
        for op in model.operators:
            for j in op.inputs[:1] + op.outputs:
                if j < 0 or tensors[j].dtype != tflite.INT8:
                    raise ModelError(f"op {op.index} {op.name}: only int8 activations are supported")
        self.chunk = max(1, int(chunk))
        self.steps = []
        try:
            for op in model.operators:
                self.steps.append((self._kernel(op, tensors), op))
        except ValueError as exc:
            raise ModelError(f"cannot run this int8 model: {exc}") from None
        tin, tout = model.input_tensor(), model.output_tensor()
        self.model = model
        self.input_index, self.output_index = model.inputs[0], model.outputs[0]
        self.input_shape, self.output_shape = tuple(tin.shape), tuple(tout.shape)
        self.input_size, self.output_size = tin.numel(), tout.numel()
        self.input_scale, self.input_zero_point = tin.scale(), tin.zero_point()
        self.output_scale, self.output_zero_point = tout.scale(), tout.zero_point()
        # channel-major kernels where they apply (the NHWC kernel stays the fallback)
        # (with jit=True, the compiled loops of int8_jit inside them where numba is installed)
        self.cm_steps = [self._cm_kernel(kernel, op, jit) if channel_major else None for kernel, op in self.steps]
        self.jit = channel_major and any(getattr(cm, "jit", None) for cm in self.cm_steps)
        # the last op that reads each tensor, so activations are dropped as soon as possible
        self._last_use = {}
        readers: dict[int, int] = {}
        for step, op in enumerate(model.operators):
            for j in op.inputs:
                self._last_use[j] = step
                readers[j] = readers.get(j, 0) + 1
        # A compiled depthwise convolution whose output only the next op reads, a pointwise
        # convolution summing in float32, writes that op's centred float32 input directly.
        self._feeds: dict[int, _ConvCM] = {}
        for step in range(len(self.steps) - 1):
            dw, pw = self.cm_steps[step], self.cm_steps[step + 1]
            j = model.operators[step].outputs[0]
            if (isinstance(dw, _ConvCM) and dw.jit_depthwise and isinstance(pw, _ConvCM) and pw.pointwise
                    and pw.dtype == np.float32 and readers.get(j) == 1
                    and model.operators[step + 1].inputs[0] == j and j not in model.outputs):
                self._feeds[step] = pw
        # The graph's tail after its last large activation (MEAN -> FULLY_CONNECTED -> SOFTMAX)
        # costs mostly numpy call overhead per chunk: it runs on up to TAIL_CHUNK rows at once.
        ops = model.operators
        self.split, self.split_tensor = len(ops), self.output_index
        produced = {self.input_index}
        for s in range(1, len(ops)):
            produced.update(ops[s - 1].outputs)
            later = {j for op in ops[s:] for j in op.inputs}
            crossing = produced & later
            if len(crossing) == 1 and self.output_index not in produced:
                j = next(iter(crossing))
                if tensors[j].numel() <= TAIL_NUMEL:
                    self.split, self.split_tensor = s, j
                    break
        if self.jit:
            # Compile (first use on a machine, a few seconds) or load from numba's disk cache
            # the loops this model needs now, not inside the first timed batch.
            self.run(np.zeros((1, self.input_size), dtype=np.int8))

    @staticmethod
    def _kernel(op, tensors):
        name = op.name
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return _Conv(op, tensors, name == "DEPTHWISE_CONV_2D")
        if name == "FULLY_CONNECTED":
            return _FullyConnected(op, tensors)
        if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            return _Pool(op, tensors, name == "AVERAGE_POOL_2D")
        if name == "MEAN":
            return _Mean(op, tensors)
        if name == "ADD":
            return _Add(op, tensors)
        if name == "SOFTMAX":
            return _Softmax(op, tensors)
        return _Reshape(op, tensors)

    @staticmethod
    def _cm_kernel(kernel, op, jit=True):
        if isinstance(kernel, _Conv):
            cm = _ConvCM(kernel, jit)
            return cm if cm.ok else None
        if isinstance(kernel, _Add):
            return _AddCM(kernel, jit)
        if isinstance(kernel, _Mean):
            cm = _MeanCM(kernel)
            return cm if cm.ok else None
        return None

    def run(self, inputs, trace: bool = False):
        """int8 outputs ``(N, output_size)`` for int8 inputs ``(N, ...)`` of ``input_size`` values each.

        With ``trace=True`` returns ``(outputs, {tensor index: (N, numel) int8})`` for every op output.
        """
        x = np.asarray(inputs)
        if x.dtype != np.int8:
            raise ModelError(f"the int8 engine needs int8 inputs, got {x.dtype}")
        n = len(x) if x.ndim else 0
        if n == 0 or x[0].size != self.input_size:
            raise ModelError(f"inputs of shape {x.shape} do not match the model input {self.input_shape}")
        x = x.reshape(n, self.input_size)
        traces: dict[int, list] = {}
        phases = [(0, self.split, self.input_index, self.split_tensor, self.chunk)]
        if self.split < len(self.steps):
            phases.append((self.split, len(self.steps), self.split_tensor, self.output_index, TAIL_CHUNK))
        for first, end, source, target, chunk in phases:
            out = np.empty((n, self.model.tensors[target].numel()), dtype=np.int8)
            for start in range(0, n, chunk):
                part, seen = self._run_chunk(x[start:start + chunk], trace, first, end, source, target)
                out[start:start + len(part)] = part
                for j, v in seen.items():
                    traces.setdefault(j, []).append(v)
            x = out
        if trace:
            return out, {j: np.concatenate(v) for j, v in traces.items()}
        return out

    def _run_chunk(self, x, trace, first, end, source, target):
        """Ops ``first .. end - 1`` on tensor ``source`` = ``x``; returns tensor ``target`` (N, numel) int8.

        Activations are (N, numel) int8 NHWC or (C, N, positions) uint8 channel-major (ndim 3).
        """

        def nhwc(v):
            return to_nhwc(v) if v.ndim == 3 else v

        live = {source: x}
        seen = {}
        for step in range(first, end):
            kernel, op = self.steps[step]
            cm = self.cm_steps[step]
            a = live[op.inputs[0]]
            if op.name == "ADD":
                b = live[op.inputs[1]]
                if cm is not None and a.ndim == 3 and b.ndim == 3 and a.shape == b.shape:
                    y = cm.run(a, b)
                else:
                    y = kernel.run(nhwc(a), nhwc(b))
            elif isinstance(cm, _ConvCM):
                k = cm.k
                feeds = None if trace or step + 1 >= end else self._feeds.get(step)
                y = cm.run(a if a.ndim == 3 else to_channel_major(a, k.h * k.w, k.cin), feeds)
            elif isinstance(cm, _MeanCM) and a.ndim == 3:
                y = cm.run(a)
            else:
                y = kernel.run(nhwc(a))
            live[op.outputs[0]] = y
            if trace:
                seen[op.outputs[0]] = nhwc(y)
            for j in op.inputs:
                if self._last_use.get(j) == step and j != target:
                    live.pop(j, None)
        return nhwc(live[target]), seen


@functools.lru_cache(maxsize=4)
def _cached(model_bytes: bytes) -> BatchInterpreter:
    return BatchInterpreter(model_bytes)


def interpreter_for(model_bytes: bytes) -> BatchInterpreter:
    """A prepared engine for ``model_bytes``, reused across calls (preparation costs ~0.1 s)."""
    return _cached(bytes(model_bytes))


def run_batch(model_bytes: bytes, inputs) -> np.ndarray:
    """int8 outputs ``(N, output_size)`` of the model on int8 inputs ``(N, ...)``."""
    return interpreter_for(model_bytes).run(inputs)
