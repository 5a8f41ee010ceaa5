"""``kws-kit deploy``, ``kws-kit monitor`` and ``kws-kit firmware flash``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .firmware_group import firmware_app


def _plan_table(plan, title: str):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    table.add_column("board path")
    table.add_column("bytes", justify="right")
    table.add_column("what")
    for f in plan.files:
        table.add_row(escape(f.path), str(f.size), escape(f.kind))  # text, not rich markup
    table.add_row("total", str(plan.total_bytes), "")
    return table


def register(app: typer.Typer) -> None:
    @app.command("deploy")
    def deploy_cmd(
        board: str = typer.Option(..., "--board", "-b", help="Board name or alias (`kws-kit boards` lists them)."),
        model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder made by `kws-kit export`."),
        port: Optional[str] = typer.Option(None, "--port", "-p", help="Serial port; found by USB id when left out."),
        on: List[str] = typer.Option([], "--on", help="What a keyword does: LABEL=led[:MS] | print | pin:PIN[:MS]; repeatable. Default: LED + print for every keyword."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (files, sizes, budget) without a board."),
        force: bool = typer.Option(False, "--force", help="Deploy even when the firmware lacks ulab/kws/ml (e.g. the virtual board)."),
        verbose: bool = typer.Option(False, "--verbose", help="Make the board print per-inference scores (for `kws-kit monitor`)."),
        no_reset: bool = typer.Option(False, "--no-reset", help="Do not soft-reset the board afterwards."),
        runtime: Optional[Path] = typer.Option(None, "--runtime", hidden=True, help="Device runtime folder (tests)."),
    ) -> None:
        """Check the budget, probe the board, copy runtime + model atomically (only what changed)."""
        from rich.console import Console
        from rich.markup import escape

        from kws_kit import deploy as dep
        from kws_kit.progress import console, info, make_progress, warn

        if dry_run:
            plan = dep.plan_deploy(board, model, actions=on, verbose=verbose, runtime_dir=runtime)
            Console().print(_plan_table(plan, f"deploy plan for {plan.profile['name']} (root {plan.root})"))
            typer.echo(plan.budget.summary())
            return
        with make_progress() as progress:
            tasks = {}

            def step(path, done, total):
                if path not in tasks:
                    tasks[path] = progress.add_task(path, total=total)
                progress.update(tasks[path], completed=done)

            result = dep.deploy(board, model, port=port, actions=on, verbose=verbose, force=force,
                                reset=not no_reset, runtime_dir=runtime, progress=step, log=info)
        for w in result.warnings:
            warn(w)
        console.print(escape(result.plan.budget.summary()))
        if result.copied:
            info(f"copied {len(result.copied)} file(s), {result.bytes_copied} bytes, to {result.port} in "
                 f"{result.seconds:.1f} s; {len(result.unchanged)} unchanged; runner {result.runner}, "
                 f"front end {result.frontend}, runtime {'frozen in the firmware' if result.runtime == 'frozen' else 'in lib/kwsrt'}")
        else:
            info(f"the board on {result.port} is up to date ({len(result.unchanged)} files unchanged)")

    @app.command("monitor")
    def monitor_cmd(
        port: str = typer.Option(..., "--port", "-p", help="The board's serial port."),
        baudrate: int = typer.Option(115200, "--baud", help="Baud rate (USB CDC ports ignore it)."),
        duration: Optional[float] = typer.Option(None, "--seconds", help="Stop after this many seconds."),
        plain: bool = typer.Option(False, "--plain", help="Line output instead of the live view."),
    ) -> None:
        """Show detections and live per-class scores the board prints; Ctrl-C exits."""
        from kws_kit.monitor import monitor

        monitor(port, baudrate=baudrate, duration=duration, live=not plain, echo=typer.echo)

    fw = firmware_app(app)

    @fw.command("flash")
    def flash_cmd(
        board: str = typer.Option(..., "--board", "-b", help="Board name or alias."),
        firmware: Path = typer.Option(..., "--firmware", "-f", help="Firmware image (.bin)."),
        port: Optional[str] = typer.Option(None, "--port", "-p", help="Serial port (ESP32-S3)."),
        no_erase: bool = typer.Option(False, "--no-erase", help="Keep the flash (and its filesystem) instead of erasing it first."),
    ) -> None:
        """Flash MicroPython firmware: esptool for the ESP32-S3, ST-LINK drive / st-flash / openocd for the Nucleo."""
        from kws_kit.flash import flash
        from kws_kit.progress import info

        method = flash(board, firmware, port, erase=not no_erase, log=info)
        info(f"firmware written ({method})")
