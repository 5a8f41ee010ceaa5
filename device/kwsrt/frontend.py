"""Streaming feature front end for the boards: one new frame per 20 ms hop.

Runs on MicroPython with ulab 6 (file /lib/kwsrt/frontend.py) and under CPython
with numpy (``kws_kit.device.kwsrt.frontend``), where arrays are float32 like the
boards'. It reads the bundle's ``frontend.json`` dict and reproduces the host
reference ``kws_kit.frontend.Frontend`` (docs/frontend.md): frame k covers
samples [k*hop, k*hop + window); periodic Hann window; zero-padded FFT; power of
the bins the mel bands use; sparse mel sums; ln(max(mel, floor)); DCT-II.

Only what ulab 6 provides is used: ``np.fft.fft`` (no rfft; a complex array, or
a (real, imag) tuple on firmware built without complex support), ``np.dot``,
``np.real``/``np.imag``, ``np.frombuffer``, slicing and in-place operators.
``np.int16`` and friends are used only as dtype constants.

Buffers are allocated once: the frame buffer (reused, keeping the 160-sample
overlap between frames), the window, the mel tables, the DCT matrix, the
rolling (n_frames x n_coeffs) float window (a ring) and the int8 model input
(time ordered, shifted with a memmove each frame). Old frames are never
recomputed. ulab has no out= arguments, so each vectorised step allocates its
result (about 10 KB per frame, mostly the complex FFT output), which the
garbage collector reclaims; vectorised steps are ~10x faster than a Python loop
over bands on MicroPython.
"""

import math

try:
    from ulab import numpy as np
except ImportError:
    import numpy as np

try:
    FLOAT = np.float32  # CPython numpy: compute in single precision like the boards
    _F32 = np.float32
except AttributeError:
    FLOAT = np.float  # ulab: the firmware's float (single on the boards)
    _F32 = None

SPEC_VERSION = 1
HAS_TAKE = hasattr(np, "take")  # np.take arrived in ulab 6.6; older firmware loops over bands


class StreamingFrontend:
    """Features of a live int16 stream, frame by frame.

    ``config`` is the frontend.json dict. ``input_scale``/``input_zero_point``
    are the model's int8 input quantisation; without a scale only float
    features are kept.
    """

    def __init__(self, config, input_scale=None, input_zero_point=0):
        version = config.get("version")
        if not isinstance(version, int) or version < 1 or version > SPEC_VERSION:
            raise ValueError("frontend.json version %r not supported (up to %d)" % (version, SPEC_VERSION))
        if config["window"] != "hann_periodic":
            raise ValueError("unsupported window %r" % config["window"])
        self.kind = config["kind"]
        if self.kind not in ("mfcc", "logmel"):
            raise ValueError("unsupported kind %r" % self.kind)
        W = self.window_length = config["window_length"]
        H = self.hop_length = config["hop_length"]
        N = config["n_fft"]
        M = config["n_mels"]
        K = self.n_coeffs = config["n_coeffs"]
        self.n_frames = 1 + (config["clip_samples"] - W) // H
        self.log_floor = config["log_floor"]
        tables = config["tables"]

        # Window with the int16 -> float scaling folded in. The sample buffer is
        # n_fft long and only its first W entries are ever written, so
        # pcm * window is the zero-padded FFT input.
        scale = config["pcm_scale"]
        window = [0.0] * N
        for n in range(W):
            window[n] = (0.5 - 0.5 * math.cos(2.0 * math.pi * n / W)) * scale
        self._window = np.array(window, dtype=FLOAT)
        self._pcm = np.zeros(N, dtype=FLOAT)

        # Sparse mel tables. With np.take (ulab >= 6.6, numpy) the bands are
        # gathered into an (n_mels x widest band) block and summed in one go;
        # padding entries point at bin 0 with weight 0. Without it, a loop over
        # bands uses the flat weights and (first bin, offset, count) per band.
        self._used = tables["bins_used"]
        starts, band_weights = tables["mel_starts"], tables["mel_weights"]
        if len(starts) != M or len(band_weights) != M:
            raise ValueError("frontend.json has %d mel bands, expected %d" % (len(starts), M))
        self._width = max(1, max(len(w) for w in band_weights))
        self._use_take = HAS_TAKE
        flat = []
        self._bands = []
        if self._use_take:
            gather = []
            for start, weights in zip(starts, band_weights):
                for j in range(self._width):
                    inside = j < len(weights)
                    gather.append(start + j if inside else 0)
                    flat.append(weights[j] if inside else 0.0)
            self._gather = np.array(gather, dtype=np.uint16)
        else:
            for start, weights in zip(starts, band_weights):
                self._bands.append((start, len(flat), len(weights)))
                flat.extend(weights)
            self._log_mel = np.zeros(M, dtype=FLOAT)
        self._mel_weights = np.array(flat, dtype=FLOAT)
        self.n_mels = M

        if self.kind == "mfcc":
            rows = []
            for k in range(K):
                norm = math.sqrt((1.0 if k == 0 else 2.0) / M)
                rows.append([norm * math.cos(math.pi * k * (2 * m + 1) / (2.0 * M)) for m in range(M)])
            self._dct = np.array(rows, dtype=FLOAT)
        else:
            self._dct = None

        self._ring = np.zeros(self.n_frames * K, dtype=FLOAT)
        self._quantize = input_scale is not None
        self._scale = float(input_scale) if self._quantize else 1.0
        self._zero_point = int(input_zero_point)
        self._int8 = bytearray(self.n_frames * K)
        self._int8_view = memoryview(self._int8)
        self.reset()

    def reset(self):
        """Forget the stream: the next sample is sample 0 of frame 0."""
        self._fill = 0
        self._skip = 0
        self._head = 0  # ring row the next frame goes to
        self.frames_done = 0
        fill = self._zero_point & 0xFF
        for i in range(len(self._int8)):
            self._int8[i] = fill

    def ready(self):
        """True once a whole window of n_frames frames has been computed."""
        return self.frames_done >= self.n_frames

    def push(self, samples):
        """Add int16 samples (ulab/numpy array, list, array('h'), little-endian bytes or a memoryview of them).

        Returns how many new frames were computed (one per hop once warmed up).
        """
        # A CPython memoryview has .shape too but must be read as int16 bytes.
        if not hasattr(samples, "shape") or isinstance(samples, memoryview):
            if isinstance(samples, (list, tuple)):
                samples = np.array(samples, dtype=FLOAT)
            else:
                samples = np.frombuffer(samples, dtype=np.int16)
        W, H = self.window_length, self.hop_length
        total = len(samples)
        i = 0
        new = 0
        while i < total:
            if self._skip:  # only when hop > window: samples no frame covers
                take = min(self._skip, total - i)
                self._skip -= take
                i += take
                continue
            take = min(W - self._fill, total - i)
            self._pcm[self._fill : self._fill + take] = samples[i : i + take]
            self._fill += take
            i += take
            if self._fill == W:
                self._frame()
                new += 1
                if H < W:
                    self._pcm[: W - H] = self._pcm[H:W]
                    self._fill = W - H
                else:
                    self._fill = 0
                    self._skip = H - W
        return new

    def _frame(self):
        spectrum = np.fft.fft(self._pcm * self._window)
        used = self._used
        if isinstance(spectrum, tuple):  # ulab built without complex support
            re, im = spectrum[0][:used], spectrum[1][:used]
        else:
            head = spectrum[:used]
            re, im = np.real(head), np.imag(head)
        power = re * re + im * im

        if self._use_take:
            products = self._mel_weights * np.take(power, self._gather)
            mel = np.sum(products.reshape((self.n_mels, self._width)), axis=1)
            log_mel = np.log(np.maximum(mel, self.log_floor))
        else:
            log_mel, weights, floor = self._log_mel, self._mel_weights, self.log_floor
            for m, (start, offset, count) in enumerate(self._bands):
                energy = float(np.sum(power[start : start + count] * weights[offset : offset + count])) if count else 0.0
                log_mel[m] = math.log(energy if energy > floor else floor)
        coeffs = log_mel if self._dct is None else np.dot(self._dct, log_mel)

        K = self.n_coeffs
        row = self._head * K
        self._ring[row : row + K] = coeffs
        self._head = (self._head + 1) % self.n_frames
        self.frames_done += 1
        if self._quantize:
            view = self._int8_view
            last = len(self._int8) - K
            view[0:last] = view[K:]
            for k in range(K):
                self._int8[last + k] = self._quantize_one(coeffs[k]) & 0xFF

    def _quantize_one(self, x):
        # q = clamp(floor(((x / scale) + zero_point) + 0.5)), each step in float32
        # on the boards (single-precision floats) and under CPython via numpy.
        if _F32 is not None:
            t = (_F32(x) / _F32(self._scale) + _F32(self._zero_point)) + _F32(0.5)
        else:
            t = (float(x) / self._scale + self._zero_point) + 0.5
        q = int(math.floor(t))
        return -128 if q < -128 else (127 if q > 127 else q)

    def features(self):
        """(n_frames, n_coeffs) float features, oldest frame first (a new array)."""
        h, K = self._head, self.n_coeffs
        ordered = np.concatenate((self._ring[h * K :], self._ring[: h * K])) if h else self._ring.copy()
        return ordered.reshape((self.n_frames, self.n_coeffs))

    def last_frame(self):
        """The newest frame's n_coeffs features (a view; valid until the next frame)."""
        row = ((self._head - 1) % self.n_frames) * self.n_coeffs
        return self._ring[row : row + self.n_coeffs]

    def features_int8(self):
        """The model input: n_frames * n_coeffs int8 bytes, oldest frame first (live buffer)."""
        if not self._quantize:
            raise ValueError("no input_scale given: int8 features are not computed")
        return self._int8
