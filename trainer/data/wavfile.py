"""Fast paths for plain PCM WAV files, the overwhelmingly common case.

libsndfile (through soundfile) costs a fixed ~0.1-0.3 ms per file for set-up
and format bookkeeping, more than reading a one-second clip itself. For plain
RIFF/WAVE PCM files these helpers read the header or the int16 samples
directly; anything unusual returns None and the caller uses soundfile, so the
results are always those of the general path.
"""

from __future__ import annotations

import os
import struct

import numpy as np

_PCM, _FLOAT = 1, 3
INT16_SCALE = np.float32(1.0 / 32768.0)  # a power of two: int16 -> float32 is exact


def _chunks(f, file_size: int):
    """Yield (chunk id, body offset, declared size, first bytes of the body) of a RIFF/WAVE file."""
    head = f.read(512)  # usually holds every chunk header up to the samples: one read
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    position = 12
    while position + 8 <= file_size:
        if position + 24 <= len(head):
            header = head[position : position + 24]
        else:
            f.seek(position)
            header = f.read(24)
            if len(header) < 8:
                return
        size = int.from_bytes(header[4:8], "little")
        yield header[:4], position + 8, size, header[8:]
        position += 8 + size + (size & 1)


def header_info(path: str | os.PathLike) -> tuple[int, int, int, bool] | None:
    """(sample rate, channels, frames, floating point?) of a plain PCM/float WAV from its header, else None.

    Frames count what is really in the file, so a truncated file reports the
    samples it still has (as libsndfile does).
    """
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            fmt = None
            for chunk_id, body, size, first in _chunks(f, file_size):
                if chunk_id == b"fmt ":
                    if size < 16 or len(first) < 16:
                        return None
                    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", first[:16])
                    plain = (tag == _PCM and bits in (8, 16, 24, 32)) or (tag == _FLOAT and bits in (32, 64))
                    if not plain or channels < 1 or rate < 1 or block_align != channels * bits // 8:
                        return None
                    fmt = (rate, channels, block_align, tag == _FLOAT)
                elif chunk_id == b"data":
                    if fmt is None:
                        return None
                    available = max(0, min(size, file_size - body))
                    return fmt[0], fmt[1], available // fmt[2], fmt[3]
    except OSError:
        return None
    return None


def pcm16_mono_samples(path: str, sample_rate: int, offset_s: float, duration_s: float | None) -> np.ndarray | None:
    """The int16 samples of a ``sample_rate`` mono 16-bit PCM WAV (a view of the file's bytes), else None.

    Offsets and durations round to frames exactly like :func:`kws_kit.audio_io.load`.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    position, fmt_ok = 12, False
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        body = position + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                return None
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            fmt_ok = tag == _PCM and channels == 1 and rate == sample_rate and bits == 16
            if not fmt_ok:
                return None
        elif chunk_id == b"data":
            if not fmt_ok:
                return None
            frames = (min(body + size, len(data)) - body) // 2
            pcm = np.frombuffer(data, dtype="<i2", count=frames, offset=body)
            start = min(int(round(offset_s * sample_rate)), frames) if offset_s else 0
            stop = frames if duration_s is None else min(frames, start + int(round(duration_s * sample_rate)))
            if stop <= start:
                return None  # let the general reader raise its error
            return pcm[start:stop]
        position = body + size + (size & 1)
    return None


def read_pcm16_mono(path: str, sample_rate: int, offset_s: float, duration_s: float | None) -> np.ndarray | None:
    """Samples of a ``sample_rate`` mono 16-bit PCM WAV as float32 (int16 / 32768), else None."""
    pcm = pcm16_mono_samples(path, sample_rate, offset_s, duration_s)
    if pcm is None:
        return None
    return np.multiply(pcm, INT16_SCALE, dtype=np.float32)
