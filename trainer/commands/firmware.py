"""`kws-kit firmware build`: MicroPython firmware with the kws C module (and ulab)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .firmware_group import firmware_app


def register(app: typer.Typer) -> None:
    group = firmware_app(app)

    @group.command("build")
    def build_cmd(
        board: str = typer.Option(..., "--board", help="Board profile: nucleo or esp32s3."),
        micropython: Path = typer.Option(..., "--micropython", help="MicroPython source tree (git checkout)."),
        ulab: Optional[Path] = typer.Option(None, "--ulab", help="micropython-ulab checkout to build in as well."),
        build_dir: Optional[Path] = typer.Option(None, "--build-dir",
                                                 help="Folder for the USER_C_MODULES layout (default ./build-firmware/BOARD)."),
        jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Parallel make jobs."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands instead of running them."),
        no_freeze: bool = typer.Option(False, "--no-freeze",
                                       help="Do not freeze the kwsrt runtime into the image (deploy then copies it to /lib)."),
    ) -> None:
        """Run the port's make with USER_C_MODULES set and the runtime frozen (FROZEN_MANIFEST), then report
        text/data/bss against the board's flash."""
        from ..firmware import plan_build, run_build, size_report

        plan = plan_build(board, micropython, ulab, build_dir, jobs, check_paths=not dry_run,
                          freeze_runtime=not no_freeze)
        if dry_run:
            for note in plan.notes:
                typer.echo(f"# {note}")
            for line in plan.shell_lines():
                typer.echo(line)
            return
        sizes = run_build(plan, log=lambda line: typer.echo(line, err=True))
        typer.echo(size_report(sizes, plan.board))
