"""Placeholder registration; the command is added by the stage that owns it."""

import typer


def register(app: typer.Typer) -> None:
    pass
