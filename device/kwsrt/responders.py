"""What happens on a detection: event lines, LEDs, GPIO pins, user functions.

Runs on MicroPython (/lib/kwsrt/responders.py, no ulab) and under CPython,
where pins are :class:`FakePin` objects that record what they were set to.

Event lines (one JSON object per line on the serial port, read by
``kws-kit monitor``) are formatted by hand so the key order is fixed on every
port (MicroPython dicts do not keep insertion order)::

    {"ev":"start","board":"nucleo_l476rg","runner":"kws","labels":["_silence_","go"],"heap_free":41230}
    {"ev":"det","label":"go","score":0.871,"t_ms":12250}
    {"ev":"scores","t_ms":12250,"scores":[3,223,...],"infer_ms":41.2,"fe_ms":9.8}
    {"ev":"err","msg":"model bundle /kws is missing labels.txt"}

LED and pin actions never sleep (the audio would overrun): they switch the
output on and ``poll(now_ms)``, called by the loop every block, switches it
back when its time is up. Times are the loop's audio-sample clock.
"""

import json


def _ms(x):
    # 2 decimals without going through repr of a float (differs between ports).
    return "%.2f" % x


def event_start(board, runner, labels, heap_free):
    return '{"ev":"start","board":%s,"runner":%s,"labels":%s,"heap_free":%s}' % (
        json.dumps(board), json.dumps(runner), "[" + ",".join([json.dumps(x) for x in labels]) + "]",
        "null" if heap_free is None else "%d" % heap_free)


def event_det(label, score, t_ms):
    """``score`` is the recogniser's 0..255 window average; printed as a probability (score / 256)."""
    return '{"ev":"det","label":%s,"score":%.3f,"t_ms":%d}' % (json.dumps(label), score / 256.0, t_ms)


def event_scores(t_ms, scores, infer_ms, fe_ms):
    return '{"ev":"scores","t_ms":%d,"scores":[%s],"infer_ms":%s,"fe_ms":%s}' % (
        t_ms, ",".join(["%d" % s for s in scores]), _ms(infer_ms), _ms(fe_ms))


def event_err(msg):
    return '{"ev":"err","msg":%s}' % json.dumps(str(msg))


# --- outputs ----------------------------------------------------------------------------------


class FakePin:
    """A pin for the host and tests: remembers every value written."""

    def __init__(self, name=None):
        self.name = name
        self.history = []
        self._value = 0

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0
        self.history.append(self._value)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


def make_pin(name):
    """machine.Pin(name, OUT); on boards whose LEDs are not plain pins, machine.LED / pyb.LED."""
    try:
        import machine
    except ImportError:
        return FakePin(name)
    try:
        return machine.Pin(name, machine.Pin.OUT)
    except (ValueError, TypeError):
        pass
    led = getattr(machine, "LED", None)
    if led is not None:
        return led(name)
    import pyb

    return pyb.LED(name if isinstance(name, int) else 1)


class Output:
    """A pin that can be switched for a while; ``active_high=False`` inverts it."""

    def __init__(self, pin, active_high=True):
        self.pin = pin
        self.active_high = active_high
        self.off_at = -1  # loop time (ms) to switch back, -1: nothing pending
        self.rest = 0  # logical level to return to
        self._has_value = hasattr(pin, "value")

    def set(self, level):
        physical = (1 if level else 0) if self.active_high else (0 if level else 1)
        if self._has_value:
            self.pin.value(physical)
        elif physical:
            self.pin.on()
        else:
            self.pin.off()

    def pulse(self, level, now_ms, ms):
        self.set(level)
        if ms > 0:
            self.rest = 0 if level else 1
            self.off_at = now_ms + ms
        else:
            self.off_at = -1


def resolve_function(name):
    """"module.function" (a module on the board's path) -> the function."""
    dot = name.rfind(".")
    module_name, fn_name = name[:dot], name[dot + 1 :]
    try:
        module = __import__(module_name)
        for part in module_name.split(".")[1:]:
            module = getattr(module, part)
    except ImportError as exc:
        raise ValueError("action call %s: cannot import %s (%s)" % (name, module_name, exc))
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        raise ValueError("action call %s: %s has no function %s" % (name, module_name, fn_name))
    return fn


class Responders:
    """Runs the configured actions for each detection and prints the event lines.

    labels       the model's labels.
    actions      {label: [action dict, ...]} as validated by config.validate_actions.
    emit         prints one line (``print`` on the board; a collector in tests).
    led_pin      the board's LED, used by "led" actions that name no pin.
    pin_factory  name -> pin object (machine.Pin on boards, FakePin on the host).
    extra        {kind: factory(action, responders) -> fn(label, score, t_ms)}
                 for host-only actions (``kws-kit listen``: browser, cmd).
    """

    def __init__(self, labels, actions=None, emit=print, led_pin=None, led_active_high=True,
                 pin_factory=make_pin, extra=None, resolve=resolve_function):
        self.labels = list(labels)
        self.emit = emit
        self._pin_factory = pin_factory
        self._led_pin = led_pin
        self._led_active_high = led_active_high
        self.outputs = {}  # pin name -> Output (one per pin, shared by actions)
        self._timed = []  # outputs poll() checks
        self._handlers = [[] for _ in self.labels]
        self.detections = 0
        actions = actions or {}
        for label in actions:
            if label not in self.labels:
                raise ValueError("action for %r, which is not a model label (labels: %s)" % (label, ", ".join(self.labels)))
            index = self.labels.index(label)
            for action in actions[label]:
                self._handlers[index].append(self._make(action, extra, resolve))

    def output(self, name, active_high=True):
        out = self.outputs.get(name)
        if out is None:
            out = Output(self._pin_factory(name), active_high)
            out.set(0)
            self.outputs[name] = out
            self._timed.append(out)
        return out

    def _make(self, action, extra, resolve):
        kind = action["do"]
        if extra and kind in extra:
            return extra[kind](action, self)
        if kind == "led":
            name = action.get("pin") or self._led_pin
            if name is None:
                raise ValueError("action led: no pin given and the board profile names no LED")
            same = name == self._led_pin
            out = self.output(name, self._led_active_high if same else True)
            ms = action.get("ms", 200)
            return lambda label, score, t_ms: out.pulse(1, t_ms, ms)
        if kind == "pin":
            out = self.output(action["pin"])
            value, ms = action.get("value", 1), action.get("ms", 0)
            return lambda label, score, t_ms: out.pulse(value, t_ms, ms)
        if kind == "print":
            text = action.get("text")
            emit = self.emit
            if text is None:
                return lambda label, score, t_ms: emit("heard %s (%.2f) at %d.%03d s" % (label, score / 256.0, t_ms // 1000, t_ms % 1000))
            return lambda label, score, t_ms: emit(text)
        if kind == "call":
            return resolve(action["fn"])
        raise ValueError("unknown action %r" % (kind,))

    def detected(self, index, score, t_ms):
        """A detection of label ``index`` with window average ``score`` (0..255) at ``t_ms``."""
        self.detections += 1
        label = self.labels[index]
        self.emit(event_det(label, score, t_ms))
        for handler in self._handlers[index]:
            try:
                handler(label, score, t_ms)
            except Exception as exc:  # a failing user action must not stop listening
                self.emit(event_err("action for %s failed: %s" % (label, exc)))

    def poll(self, now_ms):
        """Switch back outputs whose time is up (allocation-free; called every block)."""
        for out in self._timed:
            if out.off_at >= 0 and now_ms >= out.off_at:
                out.set(out.rest)
                out.off_at = -1

    def all_off(self):
        for out in self._timed:
            out.set(0)
            out.off_at = -1


# Error pattern: three short flashes, then a long pause, over and over.
ERROR_PATTERN_MS = (100, 150, 100, 150, 100, 900)


def blink_error(output, sleep_ms=None, cycles=None):
    """Blink ERROR_PATTERN_MS on ``output`` forever (``cycles`` limits it, for tests)."""
    if sleep_ms is None:
        import time

        sleep_ms = getattr(time, "sleep_ms", None) or (lambda ms: time.sleep(ms / 1000.0))
    n = 0
    while cycles is None or n < cycles:
        level = 1
        for ms in ERROR_PATTERN_MS:
            output.set(level)
            sleep_ms(ms)
            level = 1 - level
        n += 1
