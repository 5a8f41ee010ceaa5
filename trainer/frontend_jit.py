"""A compiled loop for the front end's stream path, when numba is installed (it comes with librosa).

:func:`window_frames` writes ``pcm[start + f*hop + j] * window[j]`` (int16 to
float64, then one IEEE float64 multiply: exactly what numpy computes for
``frames * window``) for a run of frames straight from the 1-D PCM, 4x faster
than numpy's strided int16 x float64 ufunc loop. ``KWS_KIT_NO_JIT=1`` turns it
off (numpy then does the same multiply). numba is imported, and the loop
compiled or loaded from numba's disk cache, on first use.
"""

from __future__ import annotations

import numpy as np

from . import jit

# numba is imported on first use (importing it costs ~0.3 s; the front end is imported everywhere).
AVAILABLE = jit.enabled()
_compiled = None


def _window_frames(pcm, start, hop, count, window, out):
    wl = window.shape[0]
    for f in range(count):
        src = pcm[start + f * hop:start + f * hop + wl]
        row = out[f]
        for j in range(wl):
            row[j] = np.float64(src[j]) * window[j]


def _kernel():
    global _compiled
    if _compiled is None:
        _compiled = jit.njit(_window_frames)
    return _compiled


def window_frames(pcm: np.ndarray, start: int, hop: int, count: int, window: np.ndarray, out: np.ndarray) -> None:
    """``out[f, :len(window)] = pcm[start + f*hop : ... + len(window)] * window`` for f < count.

    ``pcm``: 1-D int16 holding every sample read; ``window``: float64; ``out``: float64
    rows of at least ``len(window)`` values (the rest is left alone).
    """
    if start < 0 or count < 0 or (count and start + (count - 1) * hop + len(window) > len(pcm)):
        raise ValueError("window_frames: frames outside the PCM")
    if count > len(out):
        raise ValueError("window_frames: more frames than output rows")
    _kernel()(pcm, int(start), int(hop), int(count), window, out)
