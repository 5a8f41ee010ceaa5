"""``kws-kit firmware flash``: put a MicroPython firmware image on a board.

* ESP32-S3: esptool (``python -m esptool``): detect the chip on the port,
  check that the image header names the same chip, erase, write at the
  profile's ``firmware.flash_offset`` (0x0 for an ESP32-S3 merged image).
* Nucleo-L476RG: copy the ``.bin`` onto the ST-LINK's mass-storage drive
  (``NODE_L476RG``) when it is mounted, else ``st-flash`` or ``openocd``.
* OpenMV: the stock firmware (with ``ml`` and ``ulab``) comes from OpenMV IDE.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import BoardError

ESP_IMAGE_MAGIC = 0xE9
# Chip ids in the ESP image extended header (esptool's IMAGE_CHIP_ID).
ESP_CHIP_IDS = {0: "esp32", 2: "esp32s2", 5: "esp32c3", 9: "esp32s3", 12: "esp32c2", 13: "esp32c6",
                16: "esp32h2", 18: "esp32p4"}


def esp_image_chip(data: bytes) -> str:
    """The chip an ESP firmware image is built for (header byte 0 = 0xE9, chip id at bytes 12-13)."""
    if len(data) < 16 or data[0] != ESP_IMAGE_MAGIC:
        raise BoardError("this file is not an ESP firmware image (no 0xE9 header)",
                         hint="use the .bin from MicroPython's ESP32_GENERIC_S3 build or `kws-kit firmware build`")
    chip_id = int.from_bytes(data[12:14], "little")
    return ESP_CHIP_IDS.get(chip_id, f"unknown chip id {chip_id}")


def _run(cmd, what: str, timeout: float = 300) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise BoardError(f"{what}: {cmd[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise BoardError(f"{what}: {cmd[0]} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        reason = (errors or lines or [f"exit code {done.returncode}"])[0]
        raise BoardError(f"{what} failed: {reason}")
    return done.stdout + done.stderr


def esptool_cmd() -> list[str]:
    return [sys.executable, "-m", "esptool"]


def detect_esp_chip(port: str, baud: int = 115200) -> str:
    """``esp32s3`` etc. for the chip on ``port`` (esptool chip-id)."""
    out = _run(esptool_cmd() + ["--port", port, "--baud", str(baud), "chip-id"], f"talking to the chip on {port}", 60)
    match = re.search(r"(?:Chip type:|Chip is|Detecting chip type\.\.\.)\s*(ESP32[-\w]*)", out)
    if not match:
        raise BoardError(f"could not tell which chip is on {port}",
                         hint="hold BOOT, press RESET, release BOOT to enter the bootloader and retry")
    return match.group(1).lower().replace("-", "")


def flash_esp32(firmware, port: str, profile: dict, *, erase: bool = True, log=print) -> None:
    fw = profile.get("firmware", {})
    chip = fw.get("chip", "esp32s3")
    data = Path(firmware).read_bytes()
    image_chip = esp_image_chip(data)
    if image_chip != chip:
        raise BoardError(f"{firmware} is built for {image_chip}, not {chip}",
                         hint=f"download the {fw.get('micropython_board', chip)} firmware")
    found = detect_esp_chip(port)
    if found != chip:
        raise BoardError(f"the chip on {port} is {found}, but the {profile['name']} board profile expects {chip}",
                         hint="wrong port or wrong --board?")
    offset = int(fw.get("flash_offset", 0))
    baud = str(fw.get("flash_baud", 460800))
    base = esptool_cmd() + ["--chip", chip, "--port", port, "--baud", baud]
    if erase:
        log(f"erasing the flash of the {chip} on {port}")
        _run(base + ["erase-flash"], "erasing the flash")
    log(f"writing {len(data)} bytes at {offset:#x}")
    _run(base + ["write-flash", f"{offset:#x}", str(firmware)], "writing the firmware")


def find_mass_storage(label: str, roots=None) -> Path | None:
    """The mounted drive called ``label`` (Linux /media, /run/media, macOS /Volumes, Windows drive labels)."""
    roots = roots if roots is not None else ["/media", "/run/media", "/Volumes", "/mnt"]
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for candidate in [root / label, *root.glob(f"*/{label}")]:
            if candidate.is_dir():
                return candidate
    return None


def flash_stm32(firmware, profile: dict, *, roots=None, log=print) -> str:
    """Flash a Nucleo; returns the method used (``mass_storage``, ``st-flash`` or ``openocd``)."""
    fw = profile.get("firmware", {})
    firmware = Path(firmware)
    if firmware.suffix.lower() not in (".bin", ".hex", ".elf"):
        raise BoardError(f"{firmware}: expected a .bin (or .hex/.elf) firmware image for the {profile['name']}")
    label = fw.get("drive_label", "NODE_L476RG")
    address = fw.get("flash_address", "0x08000000")
    drive = find_mass_storage(label, roots)
    if drive is not None and firmware.suffix.lower() in (".bin", ".hex"):
        log(f"copying {firmware.name} to the ST-LINK drive {drive}")
        try:
            shutil.copyfile(firmware, drive / firmware.name)
        except OSError as exc:
            raise BoardError(f"copying to {drive} failed: {exc.strerror or exc}") from None
        return "mass_storage"
    if shutil.which("st-flash") and firmware.suffix.lower() == ".bin":
        log(f"writing {firmware.name} with st-flash at {address}")
        _run(["st-flash", "--reset", "write", str(firmware), address], "st-flash")
        return "st-flash"
    if shutil.which("openocd"):
        log(f"writing {firmware.name} with openocd")
        program = f"program {firmware} verify reset exit" + (f" {address}" if firmware.suffix.lower() == ".bin" else "")
        _run(["openocd", "-f", "interface/stlink.cfg", "-f", "target/stm32l4x.cfg", "-c", program], "openocd")
        return "openocd"
    raise BoardError(f"no way to flash the {profile['name']} found: the {label} drive is not mounted and "
                     f"neither st-flash nor openocd is installed",
                     hint="plug the Nucleo in over its ST-LINK USB port (the drive appears), or install stlink-tools or openocd")


def flash(board: str, firmware, port: str | None = None, *, erase: bool = True, roots=None, log=print) -> str:
    from .boards import load_profile

    profile = load_profile(board)
    if not Path(firmware).is_file():
        raise BoardError(f"firmware file {firmware} not found")
    method = profile.get("firmware", {}).get("flash_method")
    if method == "esptool":
        if not port:
            raise BoardError(f"flashing the {profile['name']} needs --port (e.g. /dev/ttyACM0 or COM5)")
        flash_esp32(firmware, port, profile, erase=erase, log=log)
        return "esptool"
    if method == "mass_storage":
        return flash_stm32(firmware, profile, roots=roots, log=log)
    raise BoardError(f"kws-kit does not flash the {profile['name']}",
                     hint=profile.get("deploy", {}).get("firmware_hint") or "use the vendor's tool")

