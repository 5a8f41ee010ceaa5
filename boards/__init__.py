"""Board profiles: one JSON file per supported board (fields documented in boards/README.md).

``load_profile("nucleo")`` accepts a board's name or any of its aliases (case and
``-``/``_`` do not matter) and returns the profile as a dict.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from kws_kit.errors import BoardError

BOARD_DIR = Path(__file__).resolve().parent

REQUIRED_FIELDS = ("name", "aliases", "mcu", "clock_hz", "heap_bytes", "filesystem_bytes", "audio", "led",
                   "runner", "frontend", "firmware_features", "serial", "budget")
REQUIRED_BUDGET_FIELDS = ("heap_budget_bytes", "runtime_bytes", "buffer_bytes")


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


@lru_cache(maxsize=None)
def _profiles() -> dict[str, dict]:
    profiles = {}
    for path in sorted(BOARD_DIR.glob("*.json")):
        try:
            profile = json.loads(path.read_text())
        except ValueError as exc:
            raise BoardError(f"board profile {path.name} is not valid JSON: {exc}") from None
        missing = [f for f in REQUIRED_FIELDS if f not in profile]
        missing += [f"budget.{f}" for f in REQUIRED_BUDGET_FIELDS if f not in profile.get("budget", {})]
        if missing:
            raise BoardError(f"board profile {path.name} lacks {', '.join(missing)}")
        profiles[profile["name"]] = profile
    return profiles


def board_names() -> list[str]:
    return list(_profiles())


def _lookup() -> dict[str, str]:
    table = {}
    for name, profile in _profiles().items():
        for key in [name, *profile.get("aliases", [])]:
            table[_norm(key)] = name
    return table


def resolve_board(name_or_alias: str) -> str:
    """The canonical board name for a name or alias; BoardError listing the known ones otherwise."""
    name = _lookup().get(_norm(name_or_alias))
    if name is None:
        known = ", ".join(f"{n} ({', '.join(p['aliases'][:2])})" for n, p in _profiles().items())
        raise BoardError(f"unknown board {name_or_alias!r}", hint=f"known boards: {known}")
    return name


def load_profile(name_or_alias: str) -> dict:
    """The profile of a board (a fresh copy the caller may modify)."""
    return json.loads(json.dumps(_profiles()[resolve_board(name_or_alias)]))
