"""The shared ``kws-kit firmware`` command group (``firmware build``, ``firmware flash``).

Modules that add firmware subcommands call ``firmware_app(app)``: the group is
created and attached to the root app once, however many modules use it.
"""

from __future__ import annotations

import typer

_group: typer.Typer | None = None
_attached: set[int] = set()


def firmware_app(app: typer.Typer) -> typer.Typer:
    global _group
    if _group is None:
        _group = typer.Typer(help="Build and flash MicroPython firmware with the modules kws-kit needs.",
                             no_args_is_help=True)
    if id(app) not in _attached:
        app.add_typer(_group, name="firmware")
        _attached.add(id(app))
    return _group
