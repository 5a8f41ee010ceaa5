"""The ``kws-kit`` command line.

Each stage of the pipeline registers its commands from its own module in
``kws_kit.commands``; heavy imports (TensorFlow, librosa) happen inside the
commands so ``kws-kit --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from . import __version__
from .errors import KwsError

app = typer.Typer(
    name="kws-kit",
    help=(
        "Keyword spotting from audio to microcontroller.\n\n"
        "A typical journey: `kws-kit data synth` / `data fetch` / `data record` to get audio, "
        "`kws-kit data curate` to build a speaker-disjoint dataset, `kws-kit train`, "
        "`kws-kit export` (int8 TFLite bundle), `kws-kit eval`, then `kws-kit deploy --board nucleo`. "
        "`kws-kit demo` runs the whole pipeline on synthetic speech."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}

# Modules under kws_kit.commands, each with a ``register(app)`` function.
COMMAND_MODULES = ["data", "train", "export", "evaluate", "demo", "simulate", "listen", "boards", "deploy", "firmware"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kws-kit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    _state["debug"] = debug


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__package__}.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning errors into one clear line."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        if code == 130:  # Typer turns Ctrl-C into a silent exit 130; say what happened
            typer.secho("interrupted", err=True)
        return code
    except KwsError as exc:
        if debug:
            raise
        typer.secho(f"error: {exc.one_line()}", fg=typer.colors.RED, err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        return 130
    except OSError as exc:  # the file system said no (permissions, no space, a file where a folder should be)
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        typer.secho(f"error: {exc.strerror or exc}{where} (--debug shows where it happened)", fg=typer.colors.RED, err=True)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback on request
        if debug:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        typer.secho(
            f"internal error: {type(exc).__name__}: {msg} (run with --debug for the traceback and please report it)",
            fg=typer.colors.RED,
            err=True,
        )
        return 3
    return 0


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())
