# kws-kit keyword spotter: copied to the board as /main.py by `kws-kit deploy`.
#
# Loads /model/config.json and the model bundle it names, builds the streaming loop
# (kwsrt in /lib) from the board profile embedded in the config, prints the start
# event and listens forever. Any error prints one {"ev":"err",...} line and blinks
# the LED in the error pattern (three short flashes, a pause) instead of crashing
# silently back to the REPL.

import gc
import sys

CONFIG_PATH = "model/config.json"  # relative: boards boot in /flash (STM32, OpenMV) or / (ESP32)


def _heap_free():
    try:
        gc.collect()
        return gc.mem_free()
    except AttributeError:
        return None


def start(config_path=CONFIG_PATH, emit=print):
    from kwsrt import config as kconfig
    from kwsrt import loop as kloop
    from kwsrt.responders import event_start

    config = kconfig.validate_config(kconfig.load_json(config_path, "config.json"))
    bundle = kconfig.read_bundle(config["bundle_dir"])
    app = kloop.build(config, bundle, emit=emit)
    # the loop keeps what it needs: free the parsed frontend.json (7 KB) and the config (1 KB)
    bundle = None
    board = config["board"]
    config = None
    runner_name = getattr(app.runner, "name", type(app.runner).__name__)
    emit(event_start(board, runner_name, app.recognizer.labels, _heap_free()))
    app.run()
    return app


def fail(exc, emit=print, config_path=CONFIG_PATH, cycles=None):
    from kwsrt.responders import Output, blink_error, event_err, make_pin

    msg = "%s: %s" % (type(exc).__name__, exc) if not isinstance(exc, ValueError) else str(exc)
    emit(event_err(msg))
    try:
        sys.print_exception(exc)
    except AttributeError:
        pass
    led = None
    active_high = True
    try:
        from kwsrt import config as kconfig

        raw = kconfig.load_json(config_path, "config.json")
        led, active_high = raw.get("led_pin"), raw.get("led_active_high", True)
    except Exception:
        pass
    if led is None:
        led = "LED"
    try:
        out = Output(make_pin(led), active_high)
    except Exception:
        return  # no usable LED: the err line is all we can do
    blink_error(out, cycles=cycles)


def main():
    try:
        start()
    except KeyboardInterrupt:
        raise  # Ctrl-C from the REPL / mpremote: stop quietly
    except Exception as exc:
        fail(exc)


if __name__ == "__main__":
    main()
