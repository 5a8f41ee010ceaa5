"""Audio sources for the streaming loop: 16 kHz int16 mono into a reused ring buffer.

Runs on MicroPython (/lib/kwsrt/audio.py) and under CPython
(``kws_kit.device.kwsrt.audio``). Every source fills whole *slots* of a
:class:`RingBuffer`; the loop reads the oldest full slot as a byte memoryview
(little-endian int16 samples) and hands it to the front end. Slot views are
made once, so moving audio through the ring allocates nothing (checked under
MicroPython by tests/test_device_loop.py).

Sources (all have ``fill(ring) -> bool``: False once the stream has ended,
``overruns`` and ``close()``):
  * I2SSource      machine.I2S RX, 32-bit slots (INMP441 / SPH0645; ESP32-S3,
                   OpenMV). The int16 sample is the upper half of each 32-bit
                   word, copied byte by byte: no arithmetic, no big ints.
  * OpenMVSource   OpenMV's ``audio`` module: its callback writes into the ring.
  * KwsAudioSource the ``kws.AudioIn`` C module (Nucleo: timer-driven ADC).
  * WavSource      a 16-bit mono 16 kHz WAV file (simulation, tests).
  * SoundDeviceSource (host only, ``kws-kit listen``) lives in
    kws_kit.listen, which needs PortAudio.
"""

SAMPLE_RATE = 16000


class AudioFormatError(ValueError):
    """A WAV file the loop cannot play (wrong rate, channels or sample format)."""


class RingBuffer:
    """``n_slots`` slots of ``slot_samples`` int16 samples each.

    Read and write pointers are slot indices; ``_written``/``_read`` are
    counters each changed by one side only, so a writer running in a
    (scheduled) interrupt callback and the reader in the main loop never race
    on a shared read-modify-write. When the ring is full the incoming slot is
    dropped and counted in ``overruns`` (the audio already queued stays
    contiguous).
    """

    def __init__(self, slot_samples, n_slots):
        if slot_samples < 1 or n_slots < 2:
            raise ValueError("ring buffer needs slot_samples >= 1 and n_slots >= 2")
        self.slot_samples = slot_samples
        self.slot_bytes = 2 * slot_samples
        self.n_slots = n_slots
        self.nbytes = n_slots * self.slot_bytes
        self._data = bytearray(self.nbytes)
        view = memoryview(self._data)
        B = self.slot_bytes
        self._slots = [view[i * B : (i + 1) * B] for i in range(n_slots)]
        self._modulus = 2 * n_slots  # counters wrap here; available() is never ambiguous
        self._partial = 0  # bytes already in the write slot (byte-stream writes only)
        self.reset()

    def reset(self):
        self._written = 0
        self._read = 0
        self._partial = 0
        self.overruns = 0

    def available(self):
        """Full slots waiting to be read."""
        n = self._written - self._read
        return n + self._modulus if n < 0 else n

    # -- writer side --------------------------------------------------------------------
    def write_slot(self):
        """The next free slot as a writable byte memoryview, or None when full (an overrun).

        Fill it completely, then call ``commit()``.
        """
        if self.available() >= self.n_slots:
            self.overruns += 1
            return None
        return self._slots[self._written % self.n_slots]

    def commit(self):
        w = self._written + 1
        self._written = 0 if w == self._modulus else w

    def write(self, data):
        """Append little-endian int16 bytes of any length (callback sources).

        Slicing the incoming buffer makes a few small memoryview objects per
        call; the slots themselves are reused. Returns the bytes dropped
        because the ring was full.
        """
        src = memoryview(data)
        total = len(src)
        i = 0
        B = self.slot_bytes
        while i < total:
            if self._partial == 0 and self.available() >= self.n_slots:
                self.overruns += 1
                return total - i
            slot = self._slots[self._written % self.n_slots]
            take = B - self._partial
            if take > total - i:
                take = total - i
            slot[self._partial : self._partial + take] = src[i : i + take]
            self._partial += take
            i += take
            if self._partial == B:
                self._partial = 0
                self.commit()
        return 0

    # -- reader side ----------------------------------------------------------------------
    def peek(self):
        """The oldest full slot (byte memoryview, valid until ``advance()``) or None."""
        if self._written == self._read:
            return None
        return self._slots[self._read % self.n_slots]

    def advance(self):
        r = self._read + 1
        self._read = 0 if r == self._modulus else r


# --- WAV files -------------------------------------------------------------------------


def _u16(b, i):
    return b[i] | (b[i + 1] << 8)


def _u32(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


def read_wav_header(f, path="WAV file"):
    """Parse a RIFF/WAVE header from an open binary file.

    Returns (sample_rate, channels, bits, data_bytes) and leaves the file at the
    first sample. Raises AudioFormatError for anything but a PCM WAV.
    """
    head = f.read(12)
    if len(head) < 12 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFormatError("%s is not a WAV file (no RIFF/WAVE header)" % path)
    fmt = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            raise AudioFormatError("%s has no data chunk" % path)
        cid = chunk[0:4]
        size = _u32(chunk, 4)
        if cid == b"fmt ":
            body = f.read(size + (size & 1))
            if len(body) < 16:
                raise AudioFormatError("%s has a truncated fmt chunk" % path)
            tag = _u16(body, 0)
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag is in the sub-format
                tag = _u16(body, 24)
            fmt = (tag, _u16(body, 2), _u32(body, 4), _u16(body, 14))
        elif cid == b"data":
            if fmt is None:
                raise AudioFormatError("%s: data chunk before fmt chunk" % path)
            tag, channels, rate, bits = fmt
            if tag != 1:
                raise AudioFormatError("%s is not integer PCM (format tag %d)" % (path, tag))
            return rate, channels, bits, size
        else:
            f.read(size + (size & 1))


class WavSource:
    """Plays a 16 kHz 16-bit mono WAV file through the ring, one slot per ``fill``.

    A last partial slot (under one slot, i.e. 10 ms at the default 160-sample
    slot) is dropped: it can complete no frame and no inference.
    """

    def __init__(self, path, sample_rate=SAMPLE_RATE):
        self.path = path
        self.overruns = 0
        f = open(path, "rb")
        try:
            rate, channels, bits, size = read_wav_header(f, path)
            if rate != sample_rate or channels != 1 or bits != 16:
                raise AudioFormatError(
                    "%s is %d Hz, %d channel(s), %d-bit; the device loop needs %d Hz mono 16-bit"
                    % (path, rate, channels, bits, sample_rate)
                )
        except Exception:
            f.close()
            raise
        self._f = f
        self._left = size  # bytes of the data chunk still unread
        self.n_samples = size // 2
        self.samples_read = 0

    def fill(self, ring):
        """Read one slot from the file; False at the end of the data."""
        B = ring.slot_bytes
        if self._left < B:
            return False
        slot = ring.write_slot()
        if slot is None:  # the reader will drain the ring first; nothing lost from a file
            return True
        got = self._f.readinto(slot)
        if got != B:
            self._left = 0
            return False
        self._left -= B
        self.samples_read += ring.slot_samples
        ring.commit()
        return True

    def close(self):
        self._f.close()


# --- microphones on the boards ---------------------------------------------------------------


class I2SSource:
    """I2S MEMS microphone via machine.I2S (RX, MONO, 32-bit slots).

    ``pins``: {"sck": .., "ws": .., "sd": ..} as in the board profile. The
    microphone's 24-bit sample sits in the top of each little-endian 32-bit
    word; the int16 sample is its upper half word (bytes 2 and 3), copied
    without arithmetic so no integer object is ever allocated.
    ``ibuf`` is the driver's DMA buffer in bytes: it must hold the audio that
    arrives while the loop runs an inference.
    """

    def __init__(self, pins, sample_rate=SAMPLE_RATE, i2s_id=0, ibuf=40000, slot_samples=160):
        from machine import I2S, Pin

        self.overruns = 0
        self._i2s = I2S(i2s_id, sck=Pin(pins["sck"]), ws=Pin(pins["ws"]), sd=Pin(pins["sd"]),
                        mode=I2S.RX, bits=32, format=I2S.MONO, rate=sample_rate, ibuf=ibuf)
        self._raw = bytearray(4 * slot_samples)

    def fill(self, ring):
        slot = ring.write_slot()
        if slot is None:
            return True
        raw = self._raw  # sized for exactly one slot: 32-bit words for len(slot)//2 samples
        if self._i2s.readinto(raw) != len(raw):
            return True  # short read (non-blocking driver): try again
        convert_32_to_16(raw, slot, len(slot) // 2)
        ring.commit()
        return True

    def close(self):
        self._i2s.deinit()


def convert_32_to_16(raw, out, n):
    """Upper 16 bits of ``n`` little-endian 32-bit samples in ``raw`` -> int16 bytes in ``out``."""
    j = 2
    k = 0
    for _ in range(n):
        out[k] = raw[j]
        out[k + 1] = raw[j + 1]
        j += 4
        k += 2


class OpenMVSource:
    """OpenMV Cam built-in ``audio`` module (PDM microphone on the boards that have one).

    ``audio.start_streaming`` calls back with a buffer of int16 PCM; the
    callback only copies it into the ring (overruns counted there).
    """

    def __init__(self, ring, sample_rate=SAMPLE_RATE, gain_db=24):
        import audio

        self._audio = audio
        self._ring = ring
        audio.init(channels=1, frequency=sample_rate, gain_db=gain_db)
        self._write = ring.write
        audio.start_streaming(self._callback)

    @property
    def overruns(self):
        return self._ring.overruns

    def _callback(self, buf):
        self._write(buf)

    def fill(self, ring):
        if not ring.available():
            _idle()
        return True

    def close(self):
        self._audio.stop_streaming()


class KwsAudioSource:
    """The ``kws.AudioIn`` C module (Nucleo: ADC sampled by a timer into a C ring)."""

    def __init__(self, pins=None, sample_rate=SAMPLE_RATE, **kwargs):
        import kws

        pin = (pins or {}).get("adc", "A0")
        self._in = kws.AudioIn(pin=pin, rate=sample_rate, **kwargs)

    @property
    def overruns(self):
        return self._in.overruns

    def fill(self, ring):
        slot = ring.write_slot()
        if slot is None:
            return True
        if self._in.readinto(slot) == len(slot):
            ring.commit()
        return True

    def close(self):
        deinit = getattr(self._in, "deinit", None)
        if deinit:
            deinit()


def _idle():
    try:
        import machine

        machine.idle()
    except (ImportError, AttributeError):
        pass


def make_source(audio_config, ring, wav_path=None):
    """The source a board profile's ``audio`` block asks for (or a WAV file)."""
    rate = audio_config.get("sample_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise ValueError("audio sample_rate %r: the runtime needs %d" % (rate, SAMPLE_RATE))
    if wav_path:
        return WavSource(wav_path, rate)
    kind = audio_config.get("source")
    pins = audio_config.get("pins", {})
    if kind == "i2s":
        return I2SSource(pins, rate, audio_config.get("i2s_id", 0), audio_config.get("ibuf", 40000), ring.slot_samples)
    if kind == "openmv":
        return OpenMVSource(ring, rate, audio_config.get("gain_db", 24))
    if kind in ("adc", "kws"):
        return KwsAudioSource(pins, rate)
    if kind == "wav":
        return WavSource(audio_config["path"], rate)
    raise ValueError("unknown audio source %r (use i2s, openmv, adc or wav)" % (kind,))
