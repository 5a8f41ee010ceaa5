"""`kws-kit listen`: keyword spotting on the laptop microphone with laptop actions."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("listen")
    def listen_cmd(
        model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder (from `kws-kit export`)."),
        on: List[str] = typer.Option(
            [], "--on",
            help="LABEL=ACTION, repeatable: browser:URL, cmd:PROG,ARG,... (no shell), print, log:FILE.",
        ),
        device: Optional[str] = typer.Option(None, help="Input device (name or index, as `python -m sounddevice` lists them)."),
        seconds: Optional[float] = typer.Option(None, min=0.25, help="Stop after this much audio (default: until Ctrl-C)."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Print the per-inference scores line too."),
    ) -> None:
        """Listen on the microphone with the board's own loop; run an action per detected keyword."""
        from ..listen import listen, parse_actions

        dev = int(device) if device is not None and device.isdigit() else device
        summary = listen(model, parse_actions(on), device=dev, seconds=seconds, verbose=verbose,
                         out=typer.echo)
        typer.echo(
            f"{'stopped' if summary['interrupted'] else 'done'}: {summary['seconds']:.1f} s, "
            f"{summary['detections']} detection(s), {summary['overruns']} overrun(s)",
            err=True,
        )
