"""The streaming loop: audio -> front end -> model -> recogniser -> responders.

The one loop every target runs: the boards (MicroPython), ``kws-kit simulate``
and ``kws-kit listen`` (CPython, numpy standing in for ulab). It mirrors the
trainer's streaming evaluation (``kws_kit.streaming.inference_frames``):

* audio arrives in ring-buffer slots of ``step`` samples, where ``step`` is
  the greatest common divisor of the hop (320) and the inference period in
  samples (250 ms = 4000), i.e. 160 samples. Every frame end
  (480 + 320 k) and every inference time (4000 k) is then a slot boundary, so
  no block is ever split;
* the front end computes one frame per 320-sample hop into its rolling
  49-frame window;
* after each ``inference_period_ms`` of audio (counted in samples, not read
  from a clock, so a simulation is deterministic and a slow inference cannot
  shift the schedule) and once 49 frames exist, the model runs on the int8
  window. Scores are ``q - output_zero_point`` clamped to 0..255, handed to
  the recogniser with the time ``t_ms = k * inference_period_ms``.

Everything the loop touches per block is allocated in ``__init__``: with a
front end and runner that do not allocate, one block costs 0 bytes of heap
under MicroPython (tests/test_device_loop.py measures it). The clock is kept
in small integers (a millisecond counter plus a sub-millisecond remainder).
"""

from .responders import event_scores

try:
    from time import ticks_diff, ticks_us
except ImportError:  # CPython
    from time import perf_counter

    def ticks_us():
        return int(perf_counter() * 1000000)

    def ticks_diff(a, b):
        return a - b


def gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def block_samples(hop_length, inference_period_ms, sample_rate=16000):
    """Samples per ring slot: every frame end and inference time falls on a slot boundary."""
    period = inference_period_ms * sample_rate // 1000
    if period * 1000 != inference_period_ms * sample_rate:
        raise ValueError("inference_period_ms %d is not a whole number of samples" % inference_period_ms)
    return gcd(hop_length, period)


def to_scores(raw, zero_point, out):
    """int8 model outputs (bytearray 0..255 two's complement, array('b') or ints) -> 0..255 scores in ``out``."""
    for i in range(len(out)):
        q = int(raw[i])
        if q > 127:  # a bytearray holds int8 as 0..255
            q -= 256
        s = q - zero_point
        out[i] = 0 if s < 0 else (255 if s > 255 else s)
    return out


class Loop:
    """One keyword-spotting stream.

    source       fills the ring (``fill(ring) -> False`` at the end of a file).
    ring         an audio.RingBuffer whose slot size is ``block_samples(...)``.
    frontend     ``push(bytes view) -> new frames``, ``ready()``, ``features_int8()``.
    runner       ``invoke(features_int8) -> int8 outputs``, ``output_zero_point``.
    recognizer   kwsrt.recognizer.Recognizer.
    responders   kwsrt.responders.Responders (``detected``, ``poll``, ``emit``).
    verbose      print a {"ev":"scores",...} line per inference.
    observer     optional fn(t_ms, scores, fe_us, frames, infer_us) per inference
                 (host tools; allocation is theirs).
    """

    def __init__(self, source, ring, frontend, runner, recognizer, responders,
                 inference_period_ms=250, sample_rate=16000, hop_length=320,
                 verbose=False, observer=None):
        step = block_samples(hop_length, inference_period_ms, sample_rate)
        if ring.slot_samples != step:
            raise ValueError("ring slots hold %d samples, the loop needs %d" % (ring.slot_samples, step))
        self.source = source
        self.ring = ring
        self.frontend = frontend
        self.runner = runner
        self.recognizer = recognizer
        self.responders = responders
        self.sample_rate = sample_rate
        self.step = step
        self.period_ms = inference_period_ms
        self.period_samples = inference_period_ms * sample_rate // 1000
        self.verbose = verbose
        self.observer = observer
        self.n_classes = len(recognizer.labels)
        self.scores = bytearray(self.n_classes)
        self._zero_point = int(runner.output_zero_point)
        self.reset()

    def reset(self):
        self.samples = 0  # total samples pushed (grows; for reports)
        self.now_ms = 0  # audio clock
        self._ms_rest = 0  # sample_rate * ms remainder, < sample_rate
        self._until_infer = self.period_samples
        self.t_ms = 0  # time of the last inference
        self.inferences = 0
        self.blocks = 0
        self.frames = 0
        self.fe_us = 0  # front-end time since the last inference
        self.fe_frames = 0  # frames since the last inference
        self.infer_us = 0  # last inference
        self.running = True

    def stop(self):
        self.running = False

    def run(self, max_blocks=-1):
        """Process audio until the source ends, ``stop()`` is called or ``max_blocks`` blocks are done."""
        ring, source = self.ring, self.source
        fill, peek = source.fill, ring.peek
        while self.running and max_blocks != 0:
            view = peek()
            if view is None:
                if not fill(ring):
                    break
                continue
            self.process(view)
            ring.advance()
            if max_blocks > 0:
                max_blocks -= 1
        return self.inferences

    def process(self, block):
        """One ring slot of ``step`` samples."""
        t0 = ticks_us()
        new = self.frontend.push(block)
        self.fe_us += ticks_diff(ticks_us(), t0)
        self.fe_frames += new
        self.frames += new
        self.blocks += 1
        step = self.step
        self.samples += step
        rest = self._ms_rest + step * 1000
        sr = self.sample_rate
        if rest >= sr:
            self.now_ms += rest // sr
            rest %= sr
        self._ms_rest = rest
        self._until_infer -= step
        if self._until_infer <= 0:
            self._until_infer += self.period_samples
            self.t_ms += self.period_ms
            if self.frontend.ready():
                self.infer(self.t_ms)
        self.responders.poll(self.now_ms)

    def infer(self, t_ms):
        t0 = ticks_us()
        raw = self.runner.invoke(self.frontend.features_int8())
        self.infer_us = ticks_diff(ticks_us(), t0)
        scores = to_scores(raw, self._zero_point, self.scores)
        self.inferences += 1
        hit = self.recognizer.update(scores, t_ms)
        if hit is not None:
            self.responders.detected(hit[0], hit[1], t_ms)
        if self.verbose:
            self.responders.emit(event_scores(t_ms, scores, self.infer_us / 1000.0, self.fe_us / 1000.0))
        if self.observer is not None:
            self.observer(t_ms, scores, self.fe_us, self.fe_frames, self.infer_us)
        self.fe_us = 0
        self.fe_frames = 0


# --- putting a loop together from config.json and a bundle ---------------------------------


class KwsFrontend:
    """The C module's front end (``kws.Frontend``) behind StreamingFrontend's interface."""

    def __init__(self, kws_module, frontend_config, input_scale, input_zero_point):
        # with the input quantisation the C front end keeps its rolling window as int8
        self._fe = kws_module.Frontend(frontend_config, input_scale, input_zero_point)
        self.n_coeffs = frontend_config["n_coeffs"]
        self.n_frames = 1 + (frontend_config["clip_samples"] - frontend_config["window_length"]) // frontend_config["hop_length"]
        self.frames_done = 0
        self._scale = input_scale
        self._zero_point = input_zero_point
        self._int8 = bytearray(self.n_frames * self.n_coeffs)

    def push(self, samples):
        new = self._fe.push(samples)
        self.frames_done += new
        return new

    def ready(self):
        return self.frames_done >= self.n_frames

    def features_int8(self):
        self._fe.features_int8(self._int8, self._scale, self._zero_point)
        return self._int8


def make_frontend(frontend_config, input_scale, input_zero_point, prefer=("kws", "ulab")):
    """The board's front end: the C module where the firmware has it, else kwsrt.frontend."""
    for kind in prefer:
        if kind == "kws":
            try:
                import kws
            except ImportError:
                continue
            if hasattr(kws, "Frontend"):
                return KwsFrontend(kws, frontend_config, input_scale, input_zero_point), "kws"
        else:
            from .frontend import StreamingFrontend

            return StreamingFrontend(frontend_config, input_scale, input_zero_point), "ulab"
    from .frontend import StreamingFrontend

    return StreamingFrontend(frontend_config, input_scale, input_zero_point), "ulab"


def ring_ms(config):
    """config's ring_ms, else 320 ms for callback sources (OpenMV) and 40 ms where the
    driver buffers the audio itself (machine.I2S ibuf, kws.AudioIn's C ring, files)."""
    if config.get("ring_ms"):
        return config["ring_ms"]
    return 320 if config["audio"].get("source") == "openmv" else 40


def ring_slots(ring_ms, step, sample_rate=16000):
    """Slots for ``ring_ms`` of audio (at least 2)."""
    n = (ring_ms * sample_rate // 1000 + step - 1) // step
    return n if n >= 2 else 2


def build(config, bundle, source=None, runner=None, frontend=None, emit=print, pin_factory=None,
          observer=None, wav_path=None, extra_actions=None, ring=None):
    """A ready Loop from a validated config dict and ``config.read_bundle`` output.

    Anything not given is made the board's way: the runner with
    ``runners.make_runner``, the front end with ``make_frontend``, the source
    from the config's ``audio`` block (or ``wav_path``). Checks labels against
    the model outputs and actions against the labels (ConfigError). A ``ring``
    given with a ``source`` is the one that source already writes to.
    """
    from . import audio, config as kconfig
    from .recognizer import Recognizer
    from .responders import Responders, make_pin

    labels = bundle["labels"]
    kconfig.check_action_labels(config["actions"], labels)
    fe_cfg = bundle["frontend"]
    kconfig.check_frontend(fe_cfg)
    period = kconfig.inference_period(config, bundle["recognizer"])
    hop = fe_cfg["hop_length"]
    rate = fe_cfg.get("sample_rate", 16000)
    if runner is None:
        from .runners import make_runner

        runner = make_runner(bundle["model"], config.get("arena_size"), prefer=tuple(config["runner"]))
    if frontend is None:
        frontend = make_frontend(fe_cfg, runner.input_scale, runner.input_zero_point)[0]
    # One invoke on the empty window: counts the outputs and pays first-call costs before audio starts.
    n_outputs = len(runner.invoke(frontend.features_int8()))
    kconfig.check_labels(labels, n_outputs)
    try:
        recognizer = Recognizer(labels, **kconfig.recognizer_settings(bundle["recognizer"], config["recognizer"]))
    except (TypeError, ValueError) as exc:
        raise kconfig.ConfigError("recognizer settings: %s" % exc)
    responders = Responders(labels, config["actions"], emit=emit, led_pin=config.get("led_pin"),
                            led_active_high=config.get("led_active_high", True),
                            pin_factory=pin_factory or make_pin, extra=extra_actions)
    step = block_samples(hop, period, rate)
    if ring is None:
        ring = audio.RingBuffer(step, ring_slots(ring_ms(config), step, rate))
    if source is None:
        source = audio.make_source(config["audio"], ring, wav_path)
    return Loop(source, ring, frontend, runner, recognizer, responders, inference_period_ms=period,
                sample_rate=rate, hop_length=hop, verbose=config.get("verbose", False), observer=observer)
