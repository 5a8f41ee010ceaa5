"""`kws-kit firmware build --dry-run`: the commands and the USER_C_MODULES layout per port."""

from __future__ import annotations

import shlex

import pytest

from kws_kit.cli import main
from kws_kit.firmware import KWS_MODULE_DIR, parse_size, plan_build, size_report


def _fake_tree(tmp_path):
    mp = tmp_path / "micropython"
    for port in ("stm32", "esp32"):
        (mp / "ports" / port).mkdir(parents=True)
        (mp / "ports" / port / "Makefile").write_text("all:\n")
    ulab = tmp_path / "micropython-ulab"
    (ulab / "code").mkdir(parents=True)
    (ulab / "code" / "micropython.mk").write_text("")
    (ulab / "code" / "micropython.cmake").write_text("")
    return mp, ulab


def test_nucleo_dry_run_prints_make_with_user_c_modules(tmp_path, capsys):
    mp, ulab = _fake_tree(tmp_path)
    build = tmp_path / "fw"
    rc = main(["firmware", "build", "--board", "nucleo", "--micropython", str(mp), "--ulab", str(ulab),
               "--build-dir", str(build), "--dry-run", "-j", "3"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert f"ln -sfn {KWS_MODULE_DIR} {build / 'kws'}" in out
    assert f"ln -sfn {ulab / 'code'} {build / 'ulab'}" in out
    make = [shlex.split(line) for line in out if line.startswith("make -C") and "USER_C_MODULES" in line[8:]]
    assert make == [["make", "-C", str(mp / "ports/stm32"), "BOARD=NUCLEO_L476RG", f"USER_C_MODULES={build}",
                     "CFLAGS_EXTRA=-DULAB_MAX_DIMS=4", f"FROZEN_MANIFEST={build / 'manifest.py'}", "-j3"]]
    assert out[-1] == f"arm-none-eabi-size {mp / 'ports/stm32/build-NUCLEO_L476RG/firmware.elf'}"
    assert not build.exists()  # a dry run creates nothing


def test_esp32s3_dry_run_uses_a_cmake_include_file(tmp_path, capsys):
    mp, ulab = _fake_tree(tmp_path)
    rc = main(["firmware", "build", "--board", "esp32s3", "--micropython", str(mp), "--ulab", str(ulab),
               "--build-dir", str(tmp_path / "fw"), "--dry-run"])
    text = capsys.readouterr().out
    assert rc == 0
    assert f"include({KWS_MODULE_DIR.as_posix()}/micropython.cmake)" in text
    assert f"include({(ulab / 'code').as_posix()}/micropython.cmake)" in text
    assert f"BOARD=ESP32_GENERIC_S3 USER_C_MODULES={tmp_path / 'fw' / 'micropython.cmake'}" in text
    assert "target_compile_definitions(usermod_ulab INTERFACE ULAB_MAX_DIMS=4)" in text  # the ulab runner needs 3-D
    assert "ESP-IDF" in text


def test_module_build_files_list_the_core_sources():
    mk = (KWS_MODULE_DIR / "micropython.mk").read_text()
    cmake = (KWS_MODULE_DIR / "micropython.cmake").read_text()
    for src in ("kws_model.c", "kws_ops.c", "kws_frontend.c", "kws_mp.c"):
        assert src in mk and src in cmake
    assert "kws_audio_stm32.c" in mk and "kws_audio_stm32.c" not in cmake  # AudioIn is STM32-only
    assert "tools/" not in mk and "tools/" not in cmake


def test_bad_trees_and_boards_are_one_line_errors(tmp_path, capsys):
    assert main(["firmware", "build", "--board", "nucleo", "--micropython", str(tmp_path)]) == 1
    assert "not a MicroPython source tree" in capsys.readouterr().err
    mp, _ = _fake_tree(tmp_path)
    assert main(["firmware", "build", "--board", "openmv", "--micropython", str(mp), "--dry-run"]) != 0
    assert main(["firmware", "build", "--board", "nucleo", "--micropython", str(mp),
                 "--ulab", str(tmp_path / "nope"), "--build-dir", str(tmp_path / "b")]) == 1


def test_size_report_against_flash():
    sizes = parse_size("   text    data     bss     dec     hex filename\n 401234    1024   30000  432258  69882 fw.elf\n")
    assert sizes == {"text": 401234, "data": 1024, "bss": 30000}
    line = size_report(sizes, "nucleo")
    assert "image 402258 B" in line and "of 1024 KB flash" in line
    with pytest.raises(Exception, match="does not fit"):
        size_report({"text": 2_000_000, "data": 0, "bss": 0}, "nucleo")
    with pytest.raises(Exception):
        parse_size("garbage")


def test_plan_names_the_elf_and_size_tool(tmp_path):
    mp, _ = _fake_tree(tmp_path)
    plan = plan_build("esp32s3", mp, None, tmp_path / "b")
    assert plan.size_tool == "xtensa-esp32s3-elf-size" and plan.elf.name == "micropython.elf"
    assert plan.cmake_text.count("include(") == 1
