"""Stand-ins for the numeric parts of the device loop, in the MicroPython subset.

No numpy: the same file runs under CPython (imported by the tests) and under
the plain `micropython` binary (copied next to a driver script, and as the fake
`kws` C module and `kwsrt.runners`). None of them allocates per call.
"""

N_FRAMES = 49
N_COEFFS = 10


class StubFrontend:
    """Counts samples like the real front end (frame k ends at k*hop + window) and
    writes the loudness of each hop (mean |sample| >> 8, 0..127) into a rolling
    int8 'feature' window, so the stub model can react to audio."""

    def __init__(self, config=None, input_scale=1.0, input_zero_point=0):
        self.window_length = 480
        self.hop_length = 320
        self.n_frames = N_FRAMES
        self.n_coeffs = N_COEFFS
        self.frames_done = 0
        self._seen = 0
        self._next_end = self.window_length
        self._level_sum = 0
        self._int8 = bytearray(N_FRAMES * N_COEFFS)
        view = memoryview(self._int8)
        # Views made once: shifting the window is then a copy with no new objects.
        self._older = view[0 : len(self._int8) - N_COEFFS]
        self._newer = view[N_COEFFS:]

    def push(self, samples):
        # samples: little-endian int16 bytes; sum of |high byte| is a cheap level.
        total = 0
        for i in range(1, len(samples), 2):
            b = samples[i]
            total += (256 - b) if b > 127 else b
        self._level_sum += total
        self._seen += len(samples) // 2
        new = 0
        while self._seen >= self._next_end:
            self._next_end += self.hop_length
            self.frames_done += 1
            new += 1
            last = len(self._int8) - N_COEFFS
            self._older[:] = self._newer
            level = self._level_sum // self.hop_length
            if level > 127:
                level = 127
            for k in range(N_COEFFS):
                self._int8[last + k] = level
            self._level_sum = 0
        return new

    def ready(self):
        return self.frames_done >= self.n_frames

    def features_int8(self, out=None, scale=None, zero_point=None):
        if out is not None:  # the kws.Frontend calling convention
            out[:] = self._int8
            return out
        return self._int8


class StubRunner:
    """Three classes (_silence_, go, stop): 'go' when the newest frames are loud.

    Outputs int8 as a bytearray (two's complement), like the C runner.
    """

    input_scale = 1.0
    input_zero_point = 0
    output_scale = 1.0 / 256
    output_zero_point = -128
    name = "stub"

    def __init__(self, model_bytes=b"", arena_size=None, prefer=None, threshold=8):
        self.threshold = threshold
        self._out = bytearray(3)
        self.calls = 0

    def invoke(self, features):
        self.calls += 1
        # Average level of the last 10 frames (first coefficient of each).
        total = 0
        n = len(features)
        i = n - 10 * N_COEFFS
        while i < n:  # (range() with a non-literal step would allocate under MicroPython)
            total += features[i]
            i += N_COEFFS
        loud = total // 10 >= self.threshold
        # int8 q = score - 128, stored as a byte.
        self._out[0] = (20 - 128) & 0xFF if loud else (240 - 128) & 0xFF
        self._out[1] = (230 - 128) & 0xFF if loud else (10 - 128) & 0xFF
        self._out[2] = (5 - 128) & 0xFF
        return self._out


class StubSource:
    """Fills ``blocks`` silent slots (then ends), or forever when blocks < 0."""

    def __init__(self, blocks=-1):
        self.blocks = blocks
        self.overruns = 0

    def fill(self, ring):
        if self.blocks == 0:
            return False
        slot = ring.write_slot()
        if slot is None:
            return True
        ring.commit()
        if self.blocks > 0:
            self.blocks -= 1
        return True


def make_runner(model_bytes, arena_size=None, prefer=None):
    """kwsrt.runners.make_runner stand-in (for main.py under MicroPython)."""
    return StubRunner(model_bytes, arena_size, prefer)


Frontend = StubFrontend  # `kws.Frontend` stand-in
