"""`kws-kit simulate`: the board's streaming loop on a WAV file, on the laptop."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        wav: Path = typer.Argument(..., help="Audio to play through the loop (any WAV; converted to 16 kHz mono first)."),
        model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder (from `kws-kit export`)."),
        board: str = typer.Option("nucleo", "--board", "-b", help="Board profile whose loop settings and heap are used."),
        runner: str = typer.Option("tflm", help="Host int8 runner: tflm (the TensorFlow Lite Micro interpreter) or ulab (the boards' pure-ulab interpreter)."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every event line, with the per-inference scores."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the summary."),
    ) -> None:
        """Run EXACTLY the device code path (kwsrt under CPython, numpy as ulab) on WAV:
        detections with times, front-end and inference time per hop, estimated heap use on the board."""
        import json

        from ..simulate import format_report, simulate

        result = simulate(model, wav, board, runner=runner, verbose=verbose,
                          on_line=(lambda line: typer.echo(line)) if verbose and not as_json else None)
        if as_json:
            payload = result.to_dict()
            if verbose:
                payload["lines"] = result.lines
            typer.echo(json.dumps(payload, indent=2))
        else:
            typer.echo(format_report(result))
