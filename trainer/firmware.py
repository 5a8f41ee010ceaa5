"""Build MicroPython firmware with the `kws` C module (and optionally ulab) for a board.

``plan_build`` works out the port, the USER_C_MODULES layout and the commands;
``run_build`` runs them and reads the image size with the port's ``size`` tool;
``size_report`` compares it with the board profile's flash.

The runtime package ``kwsrt`` is frozen into the image (bytecode and constant
objects in flash, only module dicts and function objects in the heap; see
docs/runtime.md for the measured difference): the plan writes a MicroPython
manifest that includes the port's own (``$(PORT_DIR)/boards/manifest.py``, the
modules a stock build freezes) and adds ``package("kwsrt")`` from ``device/``,
plus a generated ``kwsrt/_build.py`` holding the runtime's digest so that
``kws-kit deploy`` can tell whether the firmware's runtime is the one it would
copy. ``main.py`` is not frozen: a frozen ``main.py`` runs instead of the one on
the board's filesystem (``pyexec_file_if_exists`` looks in the frozen modules
first), so users could no longer replace it without reflashing.

USER_C_MODULES differs per build system: make-based ports (stm32) take a
folder whose sub-folders each hold a ``micropython.mk``, so a small staging
folder gets ``kws`` and ``ulab`` links; CMake-based ports (esp32) take one
``micropython.cmake`` that includes every module's own.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BoardError, KwsError

KWS_MODULE_DIR = Path(__file__).resolve().parents[1] / "device" / "cmodule" / "kws"
# The port's default manifest, which a custom FROZEN_MANIFEST must include (manifest.rst):
# both ports used here keep it in boards/ (stm32 Makefile: FROZEN_MANIFEST ?= boards/manifest.py).
PORT_MANIFEST = "$(PORT_DIR)/boards/manifest.py"
# ulab's default is 2-D arrays, but the ulab runner (kwsrt.int8ops) needs 3-D ones (convolution weights
# as (taps, in, out), activations as (h, w, c)): "maximum number of dimensions is 2" otherwise. 4 = NHWC.
ULAB_MAX_DIMS = 4
# kwsrt modules only the ulab runner and the ulab front end import (kws runner + kws front end do not).
ULAB_MODULES = ("int8ops.py", "frontend.py")

# board profile name -> how MicroPython builds it
BOARD_BUILDS = {
    "nucleo_l476rg": {"port": "stm32", "board": "NUCLEO_L476RG", "system": "make",
                      "elf": "build-NUCLEO_L476RG/firmware.elf", "size_tool": "arm-none-eabi-size"},
    "esp32s3": {"port": "esp32", "board": "ESP32_GENERIC_S3", "system": "cmake",
                "elf": "build-ESP32_GENERIC_S3/micropython.elf", "size_tool": "xtensa-esp32s3-elf-size"},
}


@dataclass
class FirmwarePlan:
    board: str                     # profile name
    port: str
    port_dir: Path
    user_modules: Path             # what USER_C_MODULES is set to
    staging: Path                  # folder the plan creates (links / cmake file)
    links: dict[str, Path]         # staging/<name> -> module folder (make ports)
    cmake_text: str | None         # top-level micropython.cmake (cmake ports)
    commands: list[list[str]] = field(default_factory=list)
    elf: Path | None = None
    size_tool: str = ""
    notes: list[str] = field(default_factory=list)
    manifest: Path | None = None           # FROZEN_MANIFEST (None: the port's default, runtime not frozen)
    manifest_text: str | None = None
    build_info: Path | None = None         # staging/frozen/kwsrt/_build.py
    build_info_text: str | None = None

    def generated_files(self) -> dict[Path, str]:
        files = {}
        if self.cmake_text is not None:
            files[self.user_modules] = self.cmake_text
        if self.manifest is not None:
            files[self.build_info] = self.build_info_text
            files[self.manifest] = self.manifest_text
        return files

    def shell_lines(self) -> list[str]:
        lines = [f"mkdir -p {shlex.quote(str(self.staging))}"]
        lines += [f"ln -sfn {shlex.quote(str(target))} {shlex.quote(str(self.staging / name))}"
                  for name, target in self.links.items()]
        for path, text in self.generated_files().items():
            if path.parent != self.staging:
                lines.append(f"mkdir -p {shlex.quote(str(path.parent))}")
            lines.append(f"cat > {shlex.quote(str(path))} <<'EOF'\n{text.rstrip()}\nEOF")
        lines += [shlex.join(cmd) for cmd in self.commands]
        if self.elf is not None:
            lines.append(shlex.join([self.size_tool, str(self.elf)]))
        return lines


def runtime_source_dir(runtime_dir=None) -> Path:
    """The folder holding ``kwsrt/`` (``device/`` of the installed package unless given)."""
    if runtime_dir is not None:
        return Path(runtime_dir).expanduser().resolve()
    from importlib import resources

    return Path(str(resources.files("kws_kit.device"))).resolve()


def manifest_text(runtime_dir: Path, build_info_dir: Path, board: str,
                  port_manifest: str = PORT_MANIFEST, files: list[str] | None = None) -> str:
    """A FROZEN_MANIFEST: the port's usual frozen modules plus the kwsrt package (``files``: only
    these modules of it) and its _build.py."""
    def q(path) -> str:
        return repr(Path(path).as_posix())

    only = f"files={sorted(files)!r}, " if files is not None else ""
    return (f"# generated by kws-kit firmware build for {board}: the port's frozen modules + the kws-kit runtime\n"
            f"include({port_manifest!r})\n"
            f"package('kwsrt', {only}base_path={q(runtime_dir)})\n"
            f"package('kwsrt', files=['_build.py'], base_path={q(build_info_dir)})\n")


def frozen_modules(runtime_dir: Path, with_ulab: bool) -> list[str] | None:
    """The kwsrt files to freeze: all of them, or without ulab in the firmware all but ULAB_MODULES
    (they could never run there, and they are 19 KB of the 51 KB the package takes in an stm32 image)."""
    if with_ulab:
        return None
    return sorted(p.name for p in (runtime_dir / "kwsrt").glob("*.py") if p.name not in ULAB_MODULES)


def build_info_text(digest: str) -> str:
    return ("# generated by kws-kit firmware build: which runtime this firmware froze\n"
            f"DIGEST = {digest!r}\n")


def plan_build(board: str, micropython: Path, ulab: Path | None = None, build_dir: Path | None = None,
               jobs: int | None = None, check_paths: bool = True, freeze_runtime: bool = True,
               runtime_dir=None) -> FirmwarePlan:
    from kws_kit.boards import load_profile

    profile = load_profile(board)
    spec = BOARD_BUILDS.get(profile["name"])
    if spec is None:
        raise BoardError(f"no firmware build for board {profile['name']!r}",
                         hint=f"firmware builds exist for {', '.join(BOARD_BUILDS)}")
    micropython = Path(micropython).expanduser().resolve()
    port_dir = micropython / "ports" / spec["port"]
    ulab_code = None
    if ulab is not None:
        ulab = Path(ulab).expanduser().resolve()
        ulab_code = ulab / "code" if (ulab / "code").is_dir() or not ulab.exists() else ulab
    if check_paths:
        if not (port_dir / "Makefile").is_file():
            raise KwsError(f"{micropython} is not a MicroPython source tree (no ports/{spec['port']}/Makefile)",
                           hint="git clone https://github.com/micropython/micropython and pass its folder")
        needed = "micropython.mk" if spec["system"] == "make" else "micropython.cmake"
        if ulab_code is not None and not (ulab_code / needed).is_file():
            raise KwsError(f"{ulab} is not a micropython-ulab checkout (no code/{needed})",
                           hint="git clone https://github.com/v923z/micropython-ulab")
    staging = Path(build_dir).expanduser().resolve() if build_dir else (Path.cwd() / "build-firmware" / profile["name"])
    modules = {"kws": KWS_MODULE_DIR}
    if ulab_code is not None:
        modules["ulab"] = ulab_code
    jobs = jobs or max(1, os.cpu_count() or 1)
    make = ["make", "-C"]
    if spec["system"] == "make":
        user_modules, links, cmake_text = staging, modules, None
    else:
        user_modules, links = staging / "micropython.cmake", {}
        cmake_text = "# generated by kws-kit firmware build\n" + "".join(
            f"include({(path / 'micropython.cmake').as_posix()})\n" for path in modules.values())
        if ulab_code is not None:
            cmake_text += f"target_compile_definitions(usermod_ulab INTERFACE ULAB_MAX_DIMS={ULAB_MAX_DIMS})\n"
    board_arg = f"BOARD={spec['board']}"
    commands = [[*make, str(micropython / "mpy-cross"), f"-j{jobs}"]]
    notes = []
    if spec["system"] == "make":
        commands.append([*make, str(port_dir), board_arg, "submodules"])
    else:
        notes.append("the esp32 port needs ESP-IDF in the environment (source $IDF_PATH/export.sh first)")
        commands.append([*make, str(port_dir), board_arg, "submodules"])
    build = [*make, str(port_dir), board_arg, f"USER_C_MODULES={user_modules}"]
    if ulab_code is not None and spec["system"] == "make":
        build.append(f"CFLAGS_EXTRA=-DULAB_MAX_DIMS={ULAB_MAX_DIMS}")
    manifest = info = info_text = text = None
    if freeze_runtime:
        from .deploy import runtime_digest

        source = runtime_source_dir(runtime_dir)
        if not (source / "kwsrt" / "__init__.py").is_file():
            raise KwsError(f"no runtime package to freeze: {source / 'kwsrt' / '__init__.py'} is missing",
                           hint="reinstall kws-kit; the runtime ships in kws_kit/device")
        manifest = staging / "manifest.py"
        info = staging / "frozen" / "kwsrt" / "_build.py"
        info_text = build_info_text(runtime_digest(source))
        text = manifest_text(source, info.parent.parent, profile["name"],
                             files=frozen_modules(source, ulab_code is not None))
        build.append(f"FROZEN_MANIFEST={manifest}")
    commands.append([*build, f"-j{jobs}"])
    return FirmwarePlan(profile["name"], spec["port"], port_dir, user_modules, staging, links, cmake_text,
                        commands, port_dir / spec["elf"], spec["size_tool"], notes,
                        manifest, text, info, info_text)


def _prepare(plan: FirmwarePlan) -> None:
    from .atomic import write_text

    plan.staging.mkdir(parents=True, exist_ok=True)
    for name, target in plan.links.items():
        link = plan.staging / name
        if link.is_symlink() or not link.exists():
            tmp = plan.staging / f".{name}.tmp{os.getpid()}"
            if tmp.is_symlink():
                tmp.unlink()
            tmp.symlink_to(target, target_is_directory=True)
            os.replace(tmp, link)
        elif link.resolve() != target.resolve():
            raise KwsError(f"{link} exists and is not a link to {target}", hint="choose another --build-dir")
    for path, text in plan.generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)


def parse_size(output: str) -> dict[str, int]:
    """text/data/bss from Berkeley-format ``size`` output (first data line)."""
    lines = [line.split() for line in output.strip().splitlines() if line.strip()]
    if len(lines) < 2 or lines[0][:3] != ["text", "data", "bss"]:
        raise KwsError(f"cannot read the size tool's output: {output.strip()[:200]!r}")
    text, data, bss = (int(v) for v in lines[1][:3])
    return {"text": text, "data": data, "bss": bss}


def size_report(sizes: dict[str, int], board: str) -> str:
    from kws_kit.boards import load_profile

    profile = load_profile(board)
    flash = int(profile.get("flash_bytes") or 0)
    image = sizes["text"] + sizes["data"]
    line = f"{profile['name']}: text {sizes['text']} B, data {sizes['data']} B, bss {sizes['bss']} B; image {image} B"
    if flash:
        line += f" = {100.0 * image / flash:.1f} % of {flash // 1024} KB flash"
        if image > flash:
            raise BoardError(f"{line}: the firmware does not fit the board's flash")
    return line


def run_build(plan: FirmwarePlan, log=print) -> dict[str, int]:
    for tool in ("make", plan.size_tool):
        if shutil.which(tool) is None:
            raise KwsError(f"{tool} not found on PATH",
                           hint="install the port's toolchain (gcc-arm-none-eabi for stm32, ESP-IDF for esp32)")
    _prepare(plan)
    for cmd in plan.commands:
        log("$ " + shlex.join(cmd))
        proc = subprocess.run(cmd)
        if proc.returncode != 0:
            raise KwsError(f"firmware build failed (exit {proc.returncode}): {shlex.join(cmd)}")
    if plan.elf is None or not plan.elf.is_file():
        raise KwsError(f"the build finished but {plan.elf} is missing")
    proc = subprocess.run([plan.size_tool, str(plan.elf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise KwsError(f"{plan.size_tool} failed: {proc.stderr.strip()[:200]}")
    return parse_size(proc.stdout)
