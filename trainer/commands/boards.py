"""``kws-kit boards`` (list / show) and ``kws-kit board emulate`` (the virtual board)."""

from __future__ import annotations

from pathlib import Path

import typer


def _kb(n) -> str:
    return "-" if n is None else (f"{n / 1048576:.1f} MB" if n >= 1048576 else f"{n / 1024:.0f} KB")


def boards_table():
    from rich.table import Table

    from kws_kit.boards import board_names, load_profile

    table = Table(title="boards")
    table.add_column("board", no_wrap=True)
    for col in ("MCU", "clock", "heap", "filesystem", "audio", "runner / front end", "firmware needs"):
        table.add_column(col)
    for name in board_names():
        p = load_profile(name)
        table.add_row(name, p["mcu"], f"{p['clock_hz'] / 1e6:.0f} MHz", _kb(p["heap_bytes"]), _kb(p["filesystem_bytes"]),
                      p["audio"]["source"], f"{p['runner']} / {p['frontend']}", ", ".join(p["firmware_features"]))
    return table


def board_details(name: str):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from kws_kit.boards import load_profile

    p = load_profile(name)
    facts = Table(show_header=False, title=p.get("title", p["name"]))
    facts.add_column("field", style="bold")
    facts.add_column("value")
    b = p["budget"]
    rows = [
        ("name (aliases)", f"{p['name']} ({', '.join(p['aliases'])})"),
        ("MCU", f"{p['mcu']} at {p['clock_hz'] / 1e6:.0f} MHz"),
        ("flash / left for C modules", f"{_kb(p.get('flash_bytes'))} / {_kb(p.get('firmware_flash_left_bytes'))}"),
        ("MicroPython heap", _kb(p["heap_bytes"])),
        ("filesystem", _kb(p["filesystem_bytes"])),
        ("budget for keyword spotting", f"{_kb(b['heap_budget_bytes'])} (runtime {_kb(b['runtime_bytes'])}, "
                                        f"buffers {_kb(b['buffer_bytes'])}), {b.get('max_macs_per_inference', 0) / 1e6:.0f} M MACs"),
        ("audio", f"{p['audio']['source']} {p['audio'].get('pins')} - {p['audio'].get('notes', '')}"),
        ("LED", f"{p['led']['pin']} - {p['led'].get('notes', '')}"),
        ("runner", f"{p['runner']} (fallback {p.get('runner_fallback')})"),
        ("front end", f"{p['frontend']} (fallback {p.get('frontend_fallback')})"),
        ("firmware needs", ", ".join(p["firmware_features"])),
        ("firmware", ", ".join(f"{k}={v}" for k, v in p.get("firmware", {}).items() if k != "notes")),
        ("deploy root", p.get("deploy", {}).get("root", "/")),
        ("serial", f"{p['serial'].get('baudrate')} baud, USB {', '.join(p['serial'].get('usb_ids', []))}"),
    ]
    for k, v in rows:
        facts.add_row(k, str(v))
    parts = [facts]
    if p.get("wiring"):
        wiring = Table(title="wiring")
        wiring.add_column("part")
        wiring.add_column("board")
        for part, pin in p["wiring"]:
            wiring.add_row(part, pin)
        parts.append(wiring)
    if p.get("docs"):
        parts.append(Text(f"step by step: {p['docs']}"))
    return Group(*parts)


def register(app: typer.Typer) -> None:
    from rich.console import Console

    boards_app = typer.Typer(help="Supported boards: list them, or `boards show NAME` for one with its wiring.",
                             invoke_without_command=True)

    @boards_app.callback()
    def boards(ctx: typer.Context) -> None:
        """List the supported boards."""
        if ctx.invoked_subcommand is None:
            Console().print(boards_table())

    @boards_app.command("show")
    def show(name: str = typer.Argument(..., help="Board name or alias, e.g. nucleo, esp32s3, openmv.")) -> None:
        """One board's profile with its wiring."""
        Console().print(board_details(name))

    app.add_typer(boards_app, name="boards")

    board_app = typer.Typer(help="Board tools: a virtual board for trying deploys without hardware.",
                            no_args_is_help=True)

    @board_app.command("emulate")
    def emulate(
        folder: Path = typer.Option(Path("virtual_board"), "--dir", help="Folder that plays the board's flash."),
        board: str = typer.Option(None, "--board", help="Give the interpreter this board's heap size."),
        run_main: bool = typer.Option(False, "--run-main", help="Run main.py at every boot, like a real board."),
        micropython: str = typer.Option(None, "--micropython", help="MicroPython unix executable (default: $KWS_MICROPYTHON or `micropython`)."),
    ) -> None:
        """Serve the MicroPython unix port on a pseudo-terminal; deploy/mpremote use the printed port."""
        from kws_kit.emulate import serve

        heap = None
        if board:
            from kws_kit.boards import load_profile

            heap = load_profile(board)["heap_bytes"]

        def announce(port: str) -> None:
            typer.echo(port)
            typer.echo(f"virtual board on {port} (flash: {folder.resolve()}); try: "
                       f"kws-kit deploy --board nucleo --model BUNDLE --port {port} --force ; Ctrl-C stops it", err=True)

        serve(folder, heap_bytes=heap, run_main=run_main, micropython=micropython, announce=announce)

    app.add_typer(board_app, name="board")
