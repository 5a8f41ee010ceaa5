"""kws-kit boards / boards show and the deploy-related profile fields."""

from __future__ import annotations

import re
from pathlib import Path

from kws_kit.boards import board_names, load_profile
from kws_kit.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "boards"


def test_list_shows_every_board(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for name in board_names():
        assert name in out


def test_show_prints_wiring(capsys):
    assert main(["boards", "show", "nucleo"]) == 0
    out = capsys.readouterr().out
    for pin in ("D3 = PB3", "D4 = PB5", "A2 = PA4", "STM32L476RG"):
        assert pin in out
    assert main(["boards", "show", "ESP32-S3"]) == 0
    assert "GPIO12" in capsys.readouterr().out


def test_unknown_board_is_one_line_with_the_known_names(capsys):
    assert main(["boards", "show", "arduino-uno"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown board 'arduino-uno'" in err
    assert all(name in err for name in board_names())


def test_profiles_have_deploy_and_firmware_fields():
    for name in board_names():
        p = load_profile(name)
        assert p["deploy"]["root"].startswith("/")
        assert p["firmware"]["flash_method"] in {"esptool", "mass_storage", "openmv_ide"}
        assert p["wiring"] and all(len(row) == 2 for row in p["wiring"])
        assert (DOCS.parent.parent / p["docs"]).is_file()
    assert load_profile("esp32s3")["firmware"]["image_chip_id"] == 9 and load_profile("esp32s3")["firmware"]["flash_offset"] == 0
    nucleo = load_profile("nucleo")
    assert nucleo["audio"]["mcu_pins"] == {"sck": "PB3", "sd": "PB5", "ws": "PA4"}


def test_board_pages_give_the_commands():
    for page in ("nucleo_l476rg", "esp32s3", "openmv"):
        text = (DOCS / f"{page}.md").read_text()
        assert "kws-kit deploy --board" in text and "kws-kit monitor" in text
        assert re.search(r"kws-kit (export|demo)", text)
