"""Int8 kernels that reproduce TensorFlow Lite Micro's integer arithmetic bit for bit.

Runs under MicroPython with ulab 6 and under CPython with numpy. The kernels
follow TFLite Micro's int8 kernels (the host checks them against the real
TFLite Micro interpreter: ``kws_kit.quantize.run_int8``, ``kernels="tflm"``):

* CONV_2D, DEPTHWISE_CONV_2D: ``reference_integer_ops::ConvPerChannel`` /
  ``DepthwiseConvPerChannel``; FULLY_CONNECTED: ``reference_integer_ops::
  FullyConnected`` / ``FullyConnectedPerChannel`` (several weight scales).
  Accumulate ``w * (x - x_zp)`` over the taps inside the image, add the int32
  bias, ``MultiplyByQuantizedMultiplier`` (two roundings: doubling high mul,
  then rounding right shift) with the per-channel multiplier/shift, add the
  output zero point, clamp to the fused activation. ai-edge-litert's
  ``BUILTIN_REF`` rounds per-channel FULLY_CONNECTED once instead, so it can
  differ by 1 LSB there (docs/device_runner.md); everything else agrees.
* AVERAGE_POOL_2D / MAX_POOL_2D: ``reference_integer_ops::AveragePool`` /
  ``MaxPool`` (window clipped to the image, average rounded half away from 0).
* MEAN: ``reference_ops::QuantizedMeanOrSum`` (see ``Mean``).
* SOFTMAX: ``reference_ops::Softmax`` int8 -> int8, the gemmlowp fixed-point
  exp / reciprocal path (no lookup table).
* ADD: ``reference_integer_ops::Add`` with ``left_shift = 20``.

Exactness. Every multiplier is derived as TFLite does, from double-precision
scale arithmetic; here that double arithmetic is emulated with Python ints
(``Dbl``) so it is exact on single-precision MicroPython builds too. Products
and sums of int8 values are done in the array library's float type: exact
while every partial sum stays below 2**53 (numpy float64) or 2**24 (ulab
float32; ``Accumulator`` then flushes partial sums into Python ints before
they could round). Requantisation needs 64-bit products: numpy does it
vectorised in int64, ulab (no int64) per element with Python ints.
"""

import math
import struct

try:
    from ulab import numpy as np
    ULAB = True
except ImportError:
    ULAB = False
    try:
        import numpy as np
    except ImportError:  # plain MicroPython: only the scalar arithmetic below is usable
        np = None

if np is not None:
    try:
        ACC = np.float64  # numpy: products of int8 sums are exact up to 2**53
    except AttributeError:
        ACC = np.float  # ulab: the firmware's float
HAS_INT64 = np is not None and hasattr(np, "int64")
HAS_TAKE = np is not None and hasattr(np, "take")
MAX_TAPS = 1 << 16  # kernel windows beyond this are refused (a damaged model, not a KWS net)
MAX_PADDED = 1 << 24  # elements of a padded input


def _float_exact_limit():
    if np is None:
        return 0
    probe = np.array([16777217.0], dtype=ACC)
    return 2 ** 53 if probe[0] == 16777217.0 else 2 ** 24


EXACT_LIMIT = _float_exact_limit()

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


# --------------------------------------------------------------------------- #
# Exact double arithmetic on float32 inputs (TFLite computes scales in double)
# --------------------------------------------------------------------------- #


def _bitlen(n):
    # int.bit_length is missing on MicroPython
    n = abs(n)
    k = 0
    while n >= 1 << (k + 16):
        k += 16
    while n >> k:
        k += 1
    return k


class Dbl:
    """A positive IEEE double as ``m * 2**e`` (``m`` < 2**53), rounded like the hardware would."""

    def __init__(self, m, e, sticky=False):
        if m == 0:
            self.m, self.e = 0, 0
            return
        n = _bitlen(m)
        if n > 53:
            s = n - 53
            keep = m >> s
            rem = m & ((1 << s) - 1)
            half = 1 << (s - 1)
            if rem > half or (rem == half and (sticky or keep & 1)):
                keep += 1
            m, e = keep, e + s
            if keep >> 53:
                m, e = keep >> 1, e + 1
        self.m, self.e = m, e

    @staticmethod
    def from_f32(x):
        """Exact value of float32 ``x`` (as stored in the model)."""
        bits = struct.unpack("<I", struct.pack("<f", x))[0]
        if bits >> 31:
            raise ValueError("negative scale %r" % x)
        exp = (bits >> 23) & 0xFF
        frac = bits & 0x7FFFFF
        if exp == 0xFF:
            raise ValueError("scale is not finite")
        if exp == 0:
            return Dbl(frac, -149)
        return Dbl(frac | 0x800000, exp - 150)

    @staticmethod
    def from_int(n):
        return Dbl(n, 0)

    def mul(self, other):
        return Dbl(self.m * other.m, self.e + other.e)

    def div(self, other):
        if other.m == 0:
            raise ValueError("division by a zero scale")
        if self.m == 0:
            return Dbl(0, 0)
        # 56+ quotient bits and a sticky remainder give correct rounding to 53
        k = max(0, 56 + _bitlen(other.m) - _bitlen(self.m))
        q, r = divmod(self.m << k, other.m)
        return Dbl(q, self.e - other.e - k, r != 0)

    def scale2(self, p):
        return Dbl(self.m, self.e + p)

    def less(self, other):
        return self.m * (1 << max(self.e - other.e, 0)) < other.m * (1 << max(other.e - self.e, 0))

    def to_float(self):
        return self.m * 2.0 ** self.e


def quantize_multiplier(d):
    """TFLite ``QuantizeMultiplier`` on a :class:`Dbl`: (q31 multiplier, shift)."""
    if d.m == 0:
        return 0, 0
    n = _bitlen(d.m)
    shift = d.e + n  # frexp: d = (m / 2**n) * 2**shift, mantissa in [0.5, 1)
    if n <= 31:
        q = d.m << (31 - n)
    else:  # round(q * 2**31), half away from zero (q > 0)
        q = (d.m + (1 << (n - 32))) >> (n - 31)
    if q == 1 << 31:
        q >>= 1
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def f32(x):
    """Round a Python float to float32 (exact emulation of one float32 operation)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def round_half_away(x):
    """std::round."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


# --------------------------------------------------------------------------- #
# gemmlowp / TFLite fixed-point primitives on Python ints
# --------------------------------------------------------------------------- #


def _wrap32(x):
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    t = ab + ((1 << 30) if ab >= 0 else (1 - (1 << 30)))
    return t >> 31 if t >= 0 else -((-t) >> 31)


def rdbpot(x, exponent):
    """RoundingDivideByPOT."""
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def mbqm(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier (double rounding, TFLite's default build)."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rdbpot(srdhm(_wrap32(x * (1 << left)), multiplier), right)


def _sat_shift_left(x, exponent):
    """SaturatingRoundingMultiplyByPOT with a positive exponent."""
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return x << exponent


def _rescale(x, exponent):
    """Rescale between fixed-point formats: multiply by 2**exponent, rounding/saturating."""
    if exponent > 0:
        return _sat_shift_left(x, exponent)
    if exponent < 0:
        return rdbpot(x, -exponent)
    return x


def _exp_on_interval(a):
    """exp(x) for x in [-1/4, 0), Q0.31 in and out."""
    x = _wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(_wrap32(srdhm(_wrap32(x4_over_4 + x3), 715827883) + x2), 1)
    return _wrap32(1895147668 + srdhm(1895147668, _wrap32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits):
    """gemmlowp exp_on_negative_values: ``a`` in Q(integer_bits), result Q0.31."""
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    a_mod = _wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval(_rescale(a_mod, integer_bits))
    remainder = _wrap32(a_mod - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent and remainder & (1 << (frac_bits + exponent)):
            result = srdhm(result, multiplier)
    if integer_bits > 5 and a < -(1 << (frac_bits + 5)):
        result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _one_over_one_plus_x(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1, Q0.31 in and out."""
    s = a + INT32_MAX  # RoundingHalfSum with One() = INT32_MAX
    half_denominator = (s + (1 if s >= 0 else -1))
    half_denominator = half_denominator // 2 if half_denominator >= 0 else -((-half_denominator) // 2)
    x = _wrap32(1515870810 + srdhm(half_denominator, -1010580540))  # 48/17 - 32/17 * d, Q2.29
    one_q2 = 1 << 29
    for _ in range(3):
        hdx = srdhm(half_denominator, x)
        x = _wrap32(x + _rescale(srdhm(x, _wrap32(one_q2 - hdx)), 2))
    return _sat_shift_left(x, 1)  # ExactMulByPot<-1> then Rescale<0>


def get_reciprocal(x, integer_digits):
    """TFLite GetReciprocal: (Q0.31 reciprocal of x scaled, num_bits_over_unit)."""
    headroom_plus_one = 32 - _bitlen(x & 0xFFFFFFFF)
    bits_over_unit = integer_digits - headroom_plus_one
    shifted_minus_one = _wrap32(((x & 0xFFFFFFFF) << headroom_plus_one) - (1 << 31))
    return _one_over_one_plus_x(shifted_minus_one), bits_over_unit


# --------------------------------------------------------------------------- #
# Vectorised requantisation
# --------------------------------------------------------------------------- #


def _np_mbqm(x, multiplier, shift):
    """Element-wise MultiplyByQuantizedMultiplier on int64 numpy arrays (broadcasting)."""
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = x * (np.int64(1) << left)
    x = ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    ab = x * multiplier
    t = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(t >= 0, t >> 31, -((-t) >> 31))
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + ((high & mask) > threshold)


def requantize(acc, correction, multipliers, shifts, out_zp, lo, hi):
    """int8 result of ``mbqm(acc + correction[c], multipliers[c], shifts[c]) + out_zp``, clamped.

    ``acc`` is a 2-D (positions x channels) float array holding exact integers,
    or a list of rows of Python ints (the ulab overflow path). Returns a flat
    int8 array in row-major order.
    """
    if HAS_INT64 and not isinstance(acc, list):
        total = acc.astype(np.int64) + correction
        return np.clip(_np_mbqm(total, multipliers, shifts) + out_zp, lo, hi).astype(np.int8).reshape(-1)
    rows = acc if isinstance(acc, list) else acc.tolist()
    n_ch = len(multipliers)
    flat = []
    for row in rows:
        for c in range(n_ch):
            v = mbqm(int(row[c]) + correction[c], multipliers[c], shifts[c]) + out_zp
            flat.append(lo if v < lo else hi if v > hi else v)
    return np.array(flat, dtype=np.int8)


class Accumulator:
    """Sum of float arrays of exact integers, never letting a partial sum round.

    ``add(term, bound)``: ``bound`` is the largest possible |value| of the term.
    With float64 it is one running array; with float32 the running array is
    flushed into Python ints before it could exceed 2**24.
    """

    def __init__(self):
        self.acc = None
        self.bound = 0
        self.ints = None

    def add(self, term, bound):
        if self.acc is None:
            self.acc, self.bound = term, bound
            return
        if self.bound + bound >= EXACT_LIMIT:
            self._flush()
            self.acc, self.bound = term, bound
            return
        self.acc = self.acc + term
        self.bound += bound

    def _flush(self):
        rows = self.acc.tolist()
        if self.ints is None:
            self.ints = [[int(v) for v in row] for row in rows]
        else:
            for r, row in enumerate(rows):
                target = self.ints[r]
                for c in range(len(row)):
                    target[c] += int(row[c])

    def result(self):
        """A float array (exact) or a list of rows of Python ints."""
        if self.ints is None:
            return self.acc
        self._flush()
        return self.ints


def as_float(x):
    return np.array(x, dtype=ACC)


def int8_view(buf, offset, count):
    return np.frombuffer(buf, dtype=np.int8, count=count, offset=offset)


# --------------------------------------------------------------------------- #
# Op preparation helpers
# --------------------------------------------------------------------------- #


def activation_range(activation, scale, zero_point):
    """CalculateActivationRangeQuantized for int8."""
    lo, hi = -128, 127

    def q(v):
        return zero_point + int(round_half_away(f32(v / scale)))

    if activation == "RELU":
        lo = max(lo, q(0.0))
    elif activation == "RELU6":
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    elif activation == "RELU_N1_TO_1":
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    elif activation != "NONE":
        raise ValueError("unsupported fused activation %s" % activation)
    return lo, hi


def padding_before(padding, in_size, out_size, stride, dilation, kernel):
    """ComputePaddingHeightWidth: padding before the first element (the offset goes after)."""
    if padding == "VALID":
        return 0
    effective = (kernel - 1) * dilation + 1
    total = (out_size - 1) * stride + effective - in_size
    return total // 2 if total > 0 else 0


def padded(x, fill, top, left, rows, cols):
    """x (H, W, C) placed in a (rows, cols, C) float array of ``fill``."""
    h, w, c = x.shape
    out = np.full((rows, cols, c), fill, dtype=ACC)
    out[top:top + h, left:left + w, :] = x
    return out


def int_list(values):
    return [int(v) for v in values]


def row_sums(x2d):
    """Exact row sums of a 2-D integer-valued array as Python ints.

    Not ``np.sum``: ulab sums a float array as a running mean (Welford) times
    the count, in float32 on the boards, which is not exact for integers (a
    weight row summing to 1234 can come back as 1233.999 and truncate).
    """
    return [int(sum(int(v) for v in row)) for row in x2d.tolist()]


class _Index:
    def __getitem__(self, key):
        return key


# slice(None), made by subscription: MicroPython 1.29's ports build slice() without a constructor
# ("TypeError: can't create 'slice' instances"), but `x[:]` syntax still makes slice objects.
_ALL = _Index()[:]


def axis_sum(x, axis):
    """Sum over one axis by adding slices: exact for integer values while partial sums stay below EXACT_LIMIT.

    ulab's ``np.sum`` of a float array is a float32 running mean times the
    count (not exact); adding slices is one exact float add per element.
    """
    n = x.shape[axis]
    index = [_ALL] * len(x.shape)
    index[axis] = 0
    total = x[tuple(index)]
    for i in range(1, n):
        index[axis] = i
        total = total + x[tuple(index)]
    return total


def softmax_row(row, multiplier, left_shift, diff_min, out):
    """reference_ops::Softmax int8 -> int8 on one row (list of ints), writing ints into ``out``."""
    max_in = max(row)
    exps = []
    sum_of_exps = 0
    for v in row:
        diff = v - max_in
        if diff >= diff_min:
            e = exp_on_negative_values(srdhm(_wrap32(diff * (1 << left_shift)), multiplier), 5)
            exps.append(e)
            sum_of_exps = _wrap32(sum_of_exps + rdbpot(e, 12))  # Rescale Q0 -> Q12
        else:
            exps.append(None)
    scale, bits_over_unit = get_reciprocal(sum_of_exps, 12)
    exponent = bits_over_unit + 31 - 8
    for i in range(len(row)):
        e = exps[i]
        if e is None:
            out[i] = -128
            continue
        v = rdbpot(srdhm(scale, e), exponent) - 128
        out[i] = -128 if v < -128 else 127 if v > 127 else v


def softmax_params(beta, input_scale):
    """PreprocessSoftmaxScaling + CalculateInputRadius for 5 integer bits."""
    real = Dbl.from_f32(beta).mul(Dbl.from_f32(input_scale)).scale2(26)
    cap = Dbl.from_int((1 << 31) - 1)
    if cap.less(real):
        real = cap
    multiplier, shift = quantize_multiplier(real)
    if not (Dbl.from_int(1).less(real)) or shift < 0:
        raise ValueError("SOFTMAX input scale %g is too small for the int8 kernel" % input_scale)
    diff_min = -(((1 << 5) - 1) * (1 << 26) >> shift)
    return multiplier, shift, diff_min


# --------------------------------------------------------------------------- #
# Kernels: prepared once at load, run on int8 views of the arena
# --------------------------------------------------------------------------- #


def _shape4(shape):
    """NHWC from a 4-D shape (batch must be 1 for convolution-like ops)."""
    if len(shape) != 4:
        raise ValueError("expected a 4-D tensor, got shape %r" % (shape,))
    return shape


def _quant(t, what):
    if not t.scales:
        raise ValueError("%s tensor %r has no quantisation" % (what, t.name))
    return Dbl.from_f32(t.scale()), t.zero_point()


def _weights(t, what):
    if t.data is None:
        raise ValueError("%s weights %r are not constant" % (what, t.name))
    if t.dtype != 9:
        raise ValueError("%s weights %r are %s, expected int8" % (what, t.name, t.type_name()))
    return np.frombuffer(t.data, dtype=np.int8, count=t.numel())


def _bias(t, n, what):
    if t is None:
        return [0] * n
    if t.data is None or t.dtype != 2:
        raise ValueError("%s bias %r must be constant int32" % (what, t.name))
    if t.numel() != n:
        raise ValueError("%s bias has %d values for %d channels" % (what, t.numel(), n))
    return [struct.unpack_from("<i", t.data, 4 * i)[0] for i in range(n)]


def _channel_multipliers(in_scale, filt, out_scale, n, what):
    scales = filt.scales
    if len(scales) not in (1, n):
        raise ValueError("%s weights have %d scales for %d channels" % (what, len(scales), n))
    for z in filt.zero_points:
        if z != 0:
            raise ValueError("%s per-channel weights need zero point 0" % what)
    mults, shifts = [], []
    for c in range(n):
        product = in_scale.mul(Dbl.from_f32(scales[c if len(scales) > 1 else 0]))
        m, s = quantize_multiplier(product.div(out_scale))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def _check_window(what, taps, padded_size):
    if taps > MAX_TAPS or padded_size > MAX_PADDED:
        raise ValueError("%s window (%d taps, %d padded elements) is too large" % (what, taps, padded_size))


class _Requant:
    """Per-channel requantisation constants in the form ``requantize`` takes."""

    def __init__(self, correction, mults, shifts, out_zp, lo, hi):
        if HAS_INT64:
            self.correction = np.array(correction, dtype=np.int64)
            self.mults = np.array(mults, dtype=np.int64)
            self.shifts = np.array(shifts, dtype=np.int64)
        else:
            self.correction, self.mults, self.shifts = correction, mults, shifts
        self.out_zp, self.lo, self.hi = out_zp, lo, hi

    def __call__(self, acc):
        return requantize(acc, self.correction, self.mults, self.shifts, self.out_zp, self.lo, self.hi)


class Conv:
    """CONV_2D (``depthwise=False``) and DEPTHWISE_CONV_2D, NHWC, batch 1."""

    def __init__(self, op, tensors, depthwise):
        what = op.name
        x, w = tensors[op.inputs[0]], tensors[op.inputs[1]]
        b = tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        y = tensors[op.outputs[0]]
        _, self.h, self.w, self.cin = _shape4(x.shape)
        batch, self.oh, self.ow, self.cout = _shape4(y.shape)
        if x.shape[0] != 1 or batch != 1:
            raise ValueError("%s supports batch size 1 only" % what)
        wshape = _shape4(w.shape)
        o = op.options
        self.sh, self.sw = o["stride"]
        self.dh, self.dw = o["dilation"]
        if min(self.sh, self.sw, self.dh, self.dw) < 1:
            raise ValueError("%s has a zero stride or dilation" % what)
        wdata = _weights(w, what)
        in_scale, self.in_zp = _quant(x, what)
        out_scale, out_zp = _quant(y, what)
        if depthwise:
            _, self.kh, self.kw, oc = wshape
            mult = o["depth_multiplier"] or 1
            if oc != self.cout or self.cin * mult != self.cout:
                raise ValueError("%s filter %r does not match %d -> %d channels" % (what, wshape, self.cin, self.cout))
            self.mult = mult
            taps = wdata.reshape((self.kh * self.kw, self.cout))
            self.taps = [as_float(taps[t]) for t in range(self.kh * self.kw)]
            sums = row_sums(taps.transpose())
            self.tap_bound = 128 * 128
            if mult > 1:
                self.expand = [c // mult for c in range(self.cout)]
        else:
            oc, self.kh, self.kw, ci = wshape
            if oc != self.cout or ci != self.cin:
                raise ValueError("%s filter %r does not match %d -> %d channels" % (what, wshape, self.cin, self.cout))
            self.mult = 1
            # per tap a (cin, cout) matrix, so each tap is one matrix product
            wf = as_float(wdata.reshape((self.cout, self.kh * self.kw * self.cin)))
            sums = row_sums(wdata.reshape((self.cout, self.kh * self.kw * self.cin)))
            wt = wf.transpose().reshape((self.kh * self.kw, self.cin, self.cout))
            self.taps = [wt[t] for t in range(self.kh * self.kw)]
            self.tap_bound = 128 * 128 * self.cin
            if self.tap_bound >= EXACT_LIMIT:
                raise ValueError("%s has %d input channels, too many for exact float accumulation" % (what, self.cin))
        self.depthwise = depthwise
        bias = _bias(b, self.cout, what)
        mults, shifts = _channel_multipliers(in_scale, w, out_scale, self.cout, what)
        # the image is padded with the input zero point, so every tap is summed
        # and the padding's contribution (zp * w) is taken back out here
        correction = [bias[c] - self.in_zp * int(sums[c]) for c in range(self.cout)]
        lo, hi = activation_range(o["activation"], y.scale(), out_zp)
        self.requant = _Requant(correction, mults, shifts, out_zp, lo, hi)
        self.top = padding_before(o["padding"], self.h, self.oh, self.sh, self.dh, self.kh)
        self.left = padding_before(o["padding"], self.w, self.ow, self.sw, self.dw, self.kw)
        self.rows = max(self.top + self.h, (self.oh - 1) * self.sh + (self.kh - 1) * self.dh + 1)
        self.cols = max(self.left + self.w, (self.ow - 1) * self.sw + (self.kw - 1) * self.dw + 1)
        _check_window(what, self.kh * self.kw, self.rows * self.cols * max(self.cin, self.cout))

    def run(self, x_view, y_view):
        x = as_float(x_view).reshape((self.h, self.w, self.cin))
        if self.mult > 1:
            x = np.take(x, self.expand, axis=2) if HAS_TAKE else np.concatenate(
                [x[:, :, c:c + 1] for c in self.expand], axis=2)
        xp = padded(x, self.in_zp, self.top, self.left, self.rows, self.cols)
        acc = Accumulator()
        n = self.oh * self.ow
        c = self.cout if self.depthwise else self.cin
        rh, rw = (self.oh - 1) * self.sh + 1, (self.ow - 1) * self.sw + 1
        t = 0
        for ky in range(self.kh):
            y0 = ky * self.dh
            for kx in range(self.kw):
                x0 = kx * self.dw
                patch = xp[y0:y0 + rh:self.sh, x0:x0 + rw:self.sw, :].reshape((n, c))
                if self.depthwise:
                    acc.add(patch * self.taps[t], self.tap_bound)
                else:
                    acc.add(np.dot(patch, self.taps[t]), self.tap_bound)
                t += 1
        y_view[:] = self.requant(acc.result())


class FullyConnected:
    def __init__(self, op, tensors):
        what = op.name
        x, w = tensors[op.inputs[0]], tensors[op.inputs[1]]
        b = tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        y = tensors[op.outputs[0]]
        if len(w.shape) != 2:
            raise ValueError("%s weights must be 2-D, got %r" % (what, w.shape))
        if op.options.get("weights_format", 0) != 0:
            raise ValueError("%s shuffled weights are not supported" % what)
        self.units, self.depth = w.shape
        if x.numel() % self.depth or y.numel() != (x.numel() // self.depth) * self.units:
            raise ValueError("%s shapes %r x %r -> %r do not match" % (what, x.shape, w.shape, y.shape))
        self.batch = x.numel() // self.depth
        if self.depth * 128 * 128 >= EXACT_LIMIT:
            raise ValueError("%s has %d inputs, too many for exact float accumulation" % (what, self.depth))
        wdata = _weights(w, what).reshape((self.units, self.depth))
        self.wt = as_float(wdata).transpose()
        in_scale, self.in_zp = _quant(x, what)
        out_scale, out_zp = _quant(y, what)
        self.w_zp = w.zero_point() if len(w.scales) == 1 else 0
        bias = _bias(b, self.units, what)
        mults, shifts = _channel_multipliers(in_scale, w, out_scale, self.units, what) if len(w.scales) > 1 \
            else self._per_tensor(in_scale, w, out_scale)
        sums = row_sums(wdata)
        # sum (w - wzp)(x - xzp) = sum wx - xzp sum w - wzp sum x + K xzp wzp; sum x varies per input
        correction = [bias[c] - self.in_zp * int(sums[c]) + self.depth * self.in_zp * self.w_zp
                      for c in range(self.units)]
        lo, hi = activation_range(op.options["activation"], y.scale(), out_zp)
        # TFLite Micro requantises per-tensor and per-channel FULLY_CONNECTED like
        # CONV_2D (MultiplyByQuantizedMultiplier, two roundings); ai-edge-litert's
        # reference kernel rounds the per-channel case once, so it can be 1 LSB off
        self.requant = _Requant(correction, mults, shifts, out_zp, lo, hi)

    def _per_tensor(self, in_scale, w, out_scale):
        m, s = quantize_multiplier(in_scale.mul(Dbl.from_f32(w.scale())).div(out_scale))
        return [m] * self.units, [s] * self.units

    def run(self, x_view, y_view):
        x = as_float(x_view).reshape((self.batch, self.depth))
        acc = np.dot(x, self.wt)
        if self.w_zp:
            x_sums = row_sums(x)
            acc = acc.tolist()
            for r in range(self.batch):
                for c in range(self.units):
                    acc[r][c] = int(acc[r][c]) - self.w_zp * x_sums[r]
        y_view[:] = self.requant(acc)


class Pool:
    """AVERAGE_POOL_2D / MAX_POOL_2D."""

    def __init__(self, op, tensors, average):
        what = op.name
        x, y = tensors[op.inputs[0]], tensors[op.outputs[0]]
        _, self.h, self.w, self.c = _shape4(x.shape)
        batch, self.oh, self.ow, c = _shape4(y.shape)
        if x.shape[0] != 1 or batch != 1 or c != self.c:
            raise ValueError("%s shapes %r -> %r not supported" % (what, x.shape, y.shape))
        o = op.options
        self.sh, self.sw = o["stride"]
        self.fh, self.fw = o["filter"]
        if min(self.sh, self.sw, self.fh, self.fw) < 1:
            raise ValueError("%s has a zero stride or filter size" % what)
        self.average = average
        self.lo, self.hi = activation_range(o["activation"], y.scale() if y.scales else 1.0, y.zero_point())
        self.top = padding_before(o["padding"], self.h, self.oh, self.sh, 1, self.fh)
        self.left = padding_before(o["padding"], self.w, self.ow, self.sw, 1, self.fw)
        self.rows = max(self.top + self.h, (self.oh - 1) * self.sh + self.fh)
        self.cols = max(self.left + self.w, (self.ow - 1) * self.sw + self.fw)
        _check_window(what, self.fh * self.fw, self.rows * self.cols * self.c)
        if average:
            # taps inside the image per output position (the reference divides by these)
            counts = []
            for oy in range(self.oh):
                y0 = oy * self.sh - self.top
                ny = min(self.h, y0 + self.fh) - max(0, y0)
                for ox in range(self.ow):
                    x0 = ox * self.sw - self.left
                    nx = min(self.w, x0 + self.fw) - max(0, x0)
                    if ny <= 0 or nx <= 0:
                        raise ValueError("%s has a window outside the image" % what)
                    counts.append(ny * nx)
            self.counts = counts
            if HAS_INT64:
                self.counts_np = np.array(counts, dtype=np.int64).reshape((-1, 1))

    def run(self, x_view, y_view):
        x = as_float(x_view).reshape((self.h, self.w, self.c))
        fill = 0 if self.average else -128
        xp = padded(x, fill, self.top, self.left, self.rows, self.cols)
        rh, rw = (self.oh - 1) * self.sh + 1, (self.ow - 1) * self.sw + 1
        n = self.oh * self.ow
        acc = None
        for ky in range(self.fh):
            for kx in range(self.fw):
                patch = xp[ky:ky + rh:self.sh, kx:kx + rw:self.sw, :].reshape((n, self.c))
                if acc is None:
                    acc = patch
                elif self.average:
                    acc = acc + patch
                else:
                    acc = np.maximum(acc, patch)
        if not self.average:
            y_view[:] = np.array(np.clip(acc, self.lo, self.hi).reshape((n * self.c,)), dtype=np.int8)
            return
        if HAS_INT64:
            a = acc.astype(np.int64)
            half = self.counts_np // 2
            q = np.where(a > 0, (a + half) // self.counts_np, -((half - a) // self.counts_np))
            y_view[:] = np.clip(q, self.lo, self.hi).astype(np.int8).reshape(-1)
            return
        rows = acc.tolist()
        flat = []
        for p in range(n):
            cnt = self.counts[p]
            for v in rows[p]:
                v = int(v)
                v = (v + cnt // 2) // cnt if v > 0 else -((cnt // 2 - v) // cnt)
                flat.append(self.lo if v < self.lo else self.hi if v > self.hi else v)
        y_view[:] = np.array(flat, dtype=np.int8)


class Mean:
    """MEAN of an int8 tensor over constant axes: TFLite's integer ``QuantizedMeanOrSum``.

    The 1/count factor is folded into the in_scale/out_scale multiplier
    (``(m << k) // count`` with shift - k, k = floor(log2 count) clamped to 32
    and 31 + shift), then MultiplyByQuantizedMultiplier(sum - count * in_zp) +
    out_zp, clamped. TFLite Micro runs this for every int8 MEAN (keep_dims
    true and false); ai-edge-litert 2.3's reference resolver agrees (older
    TFLite releases divided after requantising, or used float arithmetic).
    """

    def __init__(self, op, tensors):
        what = op.name
        x, axis_t, y = tensors[op.inputs[0]], tensors[op.inputs[1]], tensors[op.outputs[0]]
        if len(op.inputs) < 2 or axis_t.data is None or axis_t.dtype != 2:
            raise ValueError("%s axis must be a constant int32 tensor" % what)
        rank = len(x.shape)
        raw_axes = [struct.unpack_from("<i", axis_t.data, 4 * i)[0] for i in range(axis_t.numel())]
        axes = []
        for a in raw_axes:
            a = a + rank if a < 0 else a
            if a < 0 or a >= rank:
                raise ValueError("%s axis %d out of range for rank %d" % (what, a, rank))
            if a not in axes:
                axes.append(a)
        self.shape = x.shape
        self.axes = sorted(axes, reverse=True)  # reduce the last axis first so indices stay valid
        self.count = 1
        for a in axes:
            self.count *= x.shape[a]
        self.n_out = y.numel()
        if self.count == 0 or self.n_out * self.count != x.numel():
            raise ValueError("%s output %r does not match input %r" % (what, y.shape, x.shape))
        if self.count * 128 >= EXACT_LIMIT:
            raise ValueError("%s averages %d values, too many for exact float accumulation" % (what, self.count))
        in_scale, self.in_zp = _quant(x, what)
        out_scale, self.out_zp = _quant(y, what)
        mult, shift = quantize_multiplier(in_scale.div(out_scale))
        k = min(_bitlen(self.count) - 1, 32, 31 + shift)
        self.mult, self.shift = (mult << k) // self.count, shift - k

    def run(self, x_view, y_view):
        acc = as_float(x_view).reshape(self.shape)
        for a in self.axes:
            acc = axis_sum(acc, a)
        offset = self.count * self.in_zp
        out = []
        for s in (acc.reshape((self.n_out,)).tolist() if hasattr(acc, "reshape") else [acc]):
            v = mbqm(int(s) - offset, self.mult, self.shift) + self.out_zp
            out.append(-128 if v < -128 else 127 if v > 127 else v)
        y_view[:] = np.array(out, dtype=np.int8)


class Add:
    """reference_integer_ops::Add (same shapes), left_shift 20."""

    def __init__(self, op, tensors):
        what = op.name
        a, b, y = tensors[op.inputs[0]], tensors[op.inputs[1]], tensors[op.outputs[0]]
        if a.numel() != y.numel() or b.numel() != y.numel():
            raise ValueError("%s with broadcasting (%r + %r) is not supported" % (what, a.shape, b.shape))
        sa, self.zpa = _quant(a, what)
        sb, self.zpb = _quant(b, what)
        so, self.zpo = _quant(y, what)
        twice_max = (sb if sa.less(sb) else sa).scale2(1)
        self.ma, self.sha = quantize_multiplier(sa.div(twice_max))
        self.mb, self.shb = quantize_multiplier(sb.div(twice_max))
        self.mo, self.sho = quantize_multiplier(twice_max.div(so.scale2(20)))
        if self.sho > 0 or self.sha > 0 or self.shb > 0:
            raise ValueError("%s output scale is too small for its inputs" % what)
        self.lo, self.hi = activation_range(op.options["activation"], y.scale(), self.zpo)

    def run(self, a_view, b_view, y_view):
        if HAS_INT64:
            a = (a_view.astype(np.int64) - self.zpa) << 20
            b = (b_view.astype(np.int64) - self.zpb) << 20
            s = _np_mbqm(a, self.ma, self.sha) + _np_mbqm(b, self.mb, self.shb)
            out = _np_mbqm(s, self.mo, self.sho) + self.zpo
            y_view[:] = np.clip(out, self.lo, self.hi).astype(np.int8)
            return
        av, bv = a_view.tolist(), b_view.tolist()
        out = []
        for i in range(len(av)):
            s = mbqm((av[i] - self.zpa) << 20, self.ma, self.sha) + mbqm((bv[i] - self.zpb) << 20, self.mb, self.shb)
            v = mbqm(s, self.mo, self.sho) + self.zpo
            out.append(self.lo if v < self.lo else self.hi if v > self.hi else v)
        y_view[:] = np.array(out, dtype=np.int8)


class Softmax:
    def __init__(self, op, tensors):
        what = op.name
        x, y = tensors[op.inputs[0]], tensors[op.outputs[0]]
        if x.numel() != y.numel() or not x.shape:
            raise ValueError("%s shapes %r -> %r do not match" % (what, x.shape, y.shape))
        if abs(y.scale() - 1.0 / 256) > 1e-9 or y.zero_point() != -128:
            raise ValueError("%s output must be quantised with scale 1/256, zero point -128" % what)
        self.depth = x.shape[-1]
        self.rows = x.numel() // self.depth
        beta = op.options.get("beta", 1.0)
        self.mult, self.shift, self.diff_min = softmax_params(beta, x.scale())
        self.out = [0] * self.depth

    def run(self, x_view, y_view):
        values = x_view.tolist()
        result = []
        for r in range(self.rows):
            softmax_row(values[r * self.depth:(r + 1) * self.depth], self.mult, self.shift, self.diff_min, self.out)
            result.extend(self.out)
        y_view[:] = np.array(result, dtype=np.int8)


class Reshape:
    def __init__(self, op, tensors):
        x, y = tensors[op.inputs[0]], tensors[op.outputs[0]]
        if x.numel() != y.numel():
            raise ValueError("RESHAPE %r -> %r changes the element count" % (x.shape, y.shape))
        if x.scales != y.scales or x.zero_points != y.zero_points:
            raise ValueError("RESHAPE changes the quantisation")

    def run(self, x_view, y_view):
        y_view[:] = x_view
