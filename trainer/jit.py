"""numba for kws-kit's compiled loops (kws_kit.int8_jit, kws_kit.frontend_jit).

On when numba is installed (it comes with librosa) unless ``KWS_KIT_NO_JIT`` is set to
anything but ``0``; then the numpy code paths run instead. numba is imported by
:func:`njit`, not here (importing it costs ~0.3 s).
"""

from __future__ import annotations

import importlib.util
import os


def enabled() -> bool:
    """True when the compiled loops may be used: numba installed and KWS_KIT_NO_JIT unset (or 0)."""
    return os.environ.get("KWS_KIT_NO_JIT", "") in ("", "0") and importlib.util.find_spec("numba") is not None


def njit(fn):
    """``fn`` compiled by numba (nogil), cached on disk when numba finds a writable cache
    location; without one (read-only install and home) it compiles in each process."""
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:
        return numba.njit(nogil=True)(fn)
