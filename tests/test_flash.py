"""kws-kit firmware flash with esptool / st-flash / the ST-LINK drive mocked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kws_kit import flash as fl
from kws_kit.cli import main
from kws_kit.errors import BoardError


def esp_image(chip_id: int, size: int = 4096) -> bytes:
    header = bytearray(size)
    header[0] = 0xE9
    header[1] = 3
    header[12:14] = chip_id.to_bytes(2, "little")
    return bytes(header)


class FakeRun:
    """Stands in for subprocess.run: records commands, answers chip-id like esptool."""

    def __init__(self, chip="ESP32-S3"):
        self.calls = []
        self.chip = chip

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        out = f"Connecting....\nDetecting chip type... {self.chip}\nChip type:          {self.chip} (QFN56) (revision v0.2)\n" \
            if "chip-id" in cmd else "done\n"
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")


def test_image_chip_from_header():
    assert fl.esp_image_chip(esp_image(9)) == "esp32s3"
    assert fl.esp_image_chip(esp_image(0)) == "esp32"
    with pytest.raises(BoardError, match="not an ESP firmware image"):
        fl.esp_image_chip(b"\x00" * 64)


def test_esp32s3_detects_chip_erases_and_writes_at_zero(tmp_path, monkeypatch):
    image = tmp_path / "fw.bin"
    image.write_bytes(esp_image(9))
    run = FakeRun()
    monkeypatch.setattr(fl.subprocess, "run", run)
    assert fl.flash("esp32s3", image, "/dev/ttyACM0", log=lambda m: None) == "esptool"
    assert [c[c.index("--port") + 4 if "--chip" in c else -1] for c in run.calls] == ["chip-id", "erase-flash", "write-flash"]
    write = run.calls[-1]
    assert write[-2:] == ["0x0", str(image)] and write[write.index("--chip") + 1] == "esp32s3"
    assert write[write.index("--port") + 1] == "/dev/ttyACM0"


def test_wrong_chip_image_or_board_is_refused(tmp_path, monkeypatch):
    image = tmp_path / "fw.bin"
    image.write_bytes(esp_image(0))  # a plain ESP32 image
    run = FakeRun()
    monkeypatch.setattr(fl.subprocess, "run", run)
    with pytest.raises(BoardError, match="built for esp32, not esp32s3"):
        fl.flash("esp32s3", image, "/dev/ttyACM0")
    assert run.calls == []  # nothing sent to the board
    image.write_bytes(esp_image(9))
    run.chip = "ESP32-C3"
    with pytest.raises(BoardError, match="chip on /dev/ttyACM0 is esp32c3"):
        fl.flash("esp32s3", image, "/dev/ttyACM0")
    assert not any("write-flash" in c for c in run.calls)


def test_esptool_failure_is_one_line(tmp_path, monkeypatch, capsys):
    image = tmp_path / "fw.bin"
    image.write_bytes(esp_image(9))

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 2, stdout="Connecting......\n",
                                           stderr="A fatal error occurred: Could not open /dev/ttyUSB7, the port is busy or doesn't exist.\n")

    monkeypatch.setattr(fl.subprocess, "run", failing)
    rc = main(["firmware", "flash", "--board", "esp32-s3", "--firmware", str(image), "--port", "/dev/ttyUSB7"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "port is busy" in err


def test_nucleo_copies_to_the_stlink_drive(tmp_path, monkeypatch):
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\x00\x50\x01\x20" * 100)
    drive = tmp_path / "media" / "user" / "NODE_L476RG"
    drive.mkdir(parents=True)
    monkeypatch.setattr(fl.subprocess, "run", FakeRun())
    method = fl.flash("nucleo", image, roots=[tmp_path / "media"], log=lambda m: None)
    assert method == "mass_storage" and (drive / "firmware.bin").read_bytes() == image.read_bytes()


def test_nucleo_falls_back_to_st_flash_then_fails_clearly(tmp_path, monkeypatch):
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\x00" * 64)
    run = FakeRun()
    monkeypatch.setattr(fl.subprocess, "run", run)
    monkeypatch.setattr(fl.shutil, "which", lambda name: "/usr/bin/st-flash" if name == "st-flash" else None)
    assert fl.flash("nucleo", image, roots=[tmp_path / "nothing"], log=lambda m: None) == "st-flash"
    assert run.calls[0] == ["st-flash", "--reset", "write", str(image), "0x08000000"]
    monkeypatch.setattr(fl.shutil, "which", lambda name: None)
    with pytest.raises(BoardError, match="NODE_L476RG drive is not mounted and neither st-flash nor openocd"):
        fl.flash("nucleo", image, roots=[tmp_path / "nothing"])


def test_openmv_and_missing_file(tmp_path):
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\x00" * 64)
    with pytest.raises(BoardError, match="does not flash the openmv") as err:
        fl.flash("openmv", image)
    assert "OpenMV IDE" in err.value.one_line()
    with pytest.raises(BoardError, match="not found"):
        fl.flash("esp32s3", tmp_path / "nope.bin", "/dev/ttyACM0")
