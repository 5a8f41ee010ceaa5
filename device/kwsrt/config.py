"""config.json and the model bundle on the board: load, fill defaults, validate.

Runs on MicroPython (/lib/kwsrt/config.py, no ulab needed) and under CPython
(``kws_kit.device.kwsrt.config``). Every problem is a :class:`ConfigError`
whose message names the offending file, key or value, so ``main.py`` can
print it as one ``{"ev":"err",...}`` line.

config.json (written by ``kws-kit deploy`` from the board profile and the
user's options; see docs/runtime.md)::

    {"board": "nucleo_l476rg", "bundle_dir": "/model", "inference_period_ms": 250,
     "verbose": false,
     "actions": {"go": [{"do": "led", "pin": "LED", "ms": 500}], "stop": [{"do": "print"}]},
     "audio": {"source": "adc", "sample_rate": 16000, "pins": {"adc": "A0"}},
     "led_pin": "A5", "led_active_high": true,
     "runner": ["kws", "ulab"], "arena_size": 30000, "ring_ms": 40,
     "recognizer": {"detection_threshold": 0.7}}
"""

import json

# The frontend.json versions this runtime understands (kwsrt.frontend.SPEC_VERSION;
# kept here as a number so config checks need no ulab).
FRONTEND_VERSION = 1

BUNDLE_FILES = ("model.tflite", "labels.txt", "frontend.json", "recognizer.json")

# Action kind -> (required keys, {optional key: default}).
ACTIONS = {
    "led": ((), {"pin": None, "ms": 200}),
    "pin": (("pin",), {"value": 1, "ms": 0}),
    "print": ((), {"text": None}),
    "call": (("fn",), {}),
}

RECOGNIZER_KEYS = ("average_window_ms", "detection_threshold", "suppression_ms", "minimum_count",
                   "ignore_labels", "max_results")

DEFAULTS = {
    "bundle_dir": "/model",
    "inference_period_ms": None,  # None: the bundle's recognizer.json (250 ms if it has none)
    "verbose": False,
    "actions": {},
    "audio": {"source": "i2s", "sample_rate": 16000},
    "led_pin": None,
    "led_active_high": True,
    "runner": ["kws", "ml", "ulab"],
    "arena_size": None,
    "ring_ms": None,  # None: loop.ring_ms picks by audio source
    "recognizer": {},
}


class ConfigError(ValueError):
    pass


def join(folder, name):
    return folder + name if folder.endswith("/") else folder + "/" + name


def load_json(path, what=None):
    try:
        f = open(path)
    except OSError:
        raise ConfigError("%s not found" % (what or path))
    try:
        return json.load(f)
    except ValueError as exc:
        raise ConfigError("%s is not valid JSON (%s)" % (what or path, exc))
    finally:
        f.close()


def _int(cfg, key, low):
    v = cfg[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ConfigError("config.json: %s must be an integer >= %d, got %r" % (key, low, v))
    return v


def validate_config(cfg):
    """Return a copy of ``cfg`` with defaults filled in; ConfigError for bad values."""
    if not isinstance(cfg, dict):
        raise ConfigError("config.json must hold a JSON object")
    out = {}
    for key in DEFAULTS:
        out[key] = DEFAULTS[key]
    for key in cfg:
        out[key] = cfg[key]
    if not isinstance(out.get("board"), str):
        raise ConfigError("config.json: 'board' (the board name) is missing")
    if not isinstance(out["bundle_dir"], str) or not out["bundle_dir"]:
        raise ConfigError("config.json: bundle_dir must be a folder path")
    if out["inference_period_ms"] is not None:
        _int(out, "inference_period_ms", 1)
    if out["ring_ms"] is not None:
        _int(out, "ring_ms", 20)
    if out["arena_size"] is not None:
        _int(out, "arena_size", 1)
    runner = out["runner"]
    if isinstance(runner, str):
        out["runner"] = [runner]
    if not isinstance(out["audio"], dict):
        raise ConfigError("config.json: audio must be an object (the board profile's audio block)")
    if not isinstance(out["recognizer"], dict):
        raise ConfigError("config.json: recognizer must be an object of Recognizer settings")
    for key in out["recognizer"]:
        if key not in RECOGNIZER_KEYS:
            raise ConfigError("config.json: unknown recognizer setting %r (valid: %s)" % (key, ", ".join(RECOGNIZER_KEYS)))
    out["actions"] = validate_actions(out["actions"])
    return out


def validate_actions(actions):
    """{label: [action, ...]} with each action's defaults filled in."""
    if not isinstance(actions, dict):
        raise ConfigError("config.json: actions must map labels to lists of actions")
    valid = sorted(ACTIONS)
    out = {}
    for label in actions:
        items = actions[label]
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise ConfigError("config.json: actions for %r must be a list" % label)
        done = []
        for item in items:
            if not isinstance(item, dict) or "do" not in item:
                raise ConfigError("config.json: action for %r needs a \"do\" key (one of %s)" % (label, ", ".join(valid)))
            kind = item["do"]
            if kind not in ACTIONS:
                raise ConfigError("config.json: unknown action %r for %r (valid actions: %s)" % (kind, label, ", ".join(valid)))
            required, optional = ACTIONS[kind]
            full = {"do": kind}
            for key in required:
                if key not in item:
                    raise ConfigError("config.json: action %r for %r needs %r" % (kind, label, key))
            for key in item:
                if key != "do" and key not in required and key not in optional:
                    raise ConfigError("config.json: action %r for %r has unknown key %r" % (kind, label, key))
            for key in optional:
                full[key] = optional[key]
            for key in item:
                full[key] = item[key]
            if "ms" in full and (not isinstance(full["ms"], int) or full["ms"] < 0):
                raise ConfigError("config.json: action %r for %r: ms must be an integer >= 0" % (kind, label))
            if kind == "call" and (not isinstance(full["fn"], str) or "." not in full["fn"]):
                raise ConfigError("config.json: action 'call' for %r: fn must be \"module.function\"" % label)
            done.append(full)
        out[label] = done
    return out


def check_action_labels(actions, labels):
    for label in actions:
        if label not in labels:
            raise ConfigError("config.json: action for %r, which is not a model label (labels: %s)"
                              % (label, ", ".join(labels)))


def check_frontend(frontend):
    if not isinstance(frontend, dict):
        raise ConfigError("frontend.json must hold a JSON object")
    version = frontend.get("version")
    if not isinstance(version, int) or version < 1:
        raise ConfigError("frontend.json has no valid version (got %r)" % (version,))
    if version > FRONTEND_VERSION:
        raise ConfigError("frontend.json version %d is newer than this runtime understands (%d): "
                          "deploy the runtime that came with the kws-kit that exported the model"
                          % (version, FRONTEND_VERSION))


def check_labels(labels, n_outputs):
    if len(labels) != n_outputs:
        raise ConfigError("labels.txt has %d labels but the model has %d outputs" % (len(labels), n_outputs))


def read_labels(path):
    try:
        f = open(path)
    except OSError:
        raise ConfigError("%s not found" % path)
    try:
        labels = [line.strip() for line in f.read().split("\n")]
    finally:
        f.close()
    labels = [x for x in labels if x]
    if not labels:
        raise ConfigError("%s is empty" % path)
    return labels


def read_bundle(folder):
    """{"model": bytes, "labels": [...], "frontend": {...}, "recognizer": {...}} of a bundle folder."""
    for name in BUNDLE_FILES:
        path = join(folder, name)
        try:
            open(path, "rb").close()
        except OSError:
            raise ConfigError("model bundle %s is missing %s" % (folder, name))
    frontend = load_json(join(folder, "frontend.json"))
    check_frontend(frontend)
    f = open(join(folder, "model.tflite"), "rb")
    try:
        model = f.read()
    finally:
        f.close()
    return {
        "model": model,
        "labels": read_labels(join(folder, "labels.txt")),
        "frontend": frontend,
        "recognizer": load_json(join(folder, "recognizer.json")),
    }


def recognizer_settings(bundle_recognizer, overrides):
    """Recognizer keyword arguments: the bundle's recognizer.json, then config overrides."""
    out = {}
    for source in (bundle_recognizer, overrides):
        for key in source:
            if key in RECOGNIZER_KEYS:
                out[key] = source[key]
    return out


def inference_period(config, bundle_recognizer):
    """config.json's inference_period_ms, else the bundle's, else 250 ms."""
    period = config.get("inference_period_ms")
    if period is None:
        period = bundle_recognizer.get("inference_period_ms", 250)
    if not isinstance(period, int) or isinstance(period, bool) or period < 1:
        raise ConfigError("inference_period_ms must be an integer >= 1, got %r" % (period,))
    return period
