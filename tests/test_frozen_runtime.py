"""The kwsrt runtime frozen into the firmware: the build's manifest, the budget, and deploy's probe.

The virtual board emulates a firmware with kwsrt frozen in with ``VirtualBoard(frozen=DIR)`` (the
plain unix port cannot freeze code at run time). With ``KWS_MICROPYTHON_FROZEN`` set to a MicroPython
unix binary built with ``kws-kit``'s manifest (docs/runtime.md), the probe also runs against real
frozen modules.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from virtual_board import fake_runtime, needs_micropython, tiny_bundle, tiny_tflite  # noqa: F401

from kws_kit import deploy as dep
from kws_kit.boardio import Board, Capabilities
from kws_kit.boards import load_profile
from kws_kit.budget import check_fits, ensure_fits, runtime_cost
from kws_kit.cli import main
from kws_kit.emulate import VirtualBoard
from kws_kit.errors import BoardError, ModelError
from kws_kit.firmware import build_info_text, manifest_text, plan_build, runtime_source_dir

DEVICE = runtime_source_dir()  # the installed kws_kit.device


def _fake_tree(tmp_path):
    mp = tmp_path / "micropython"
    for port in ("stm32", "esp32"):
        (mp / "ports" / port).mkdir(parents=True)
        (mp / "ports" / port / "Makefile").write_text("all:\n")
    return mp


def _manifest_calls(text: str) -> list[tuple[str, list, dict]]:
    """The function calls of a manifest (it is Python: include/package/module/... at top level)."""
    calls = []
    for node in ast.parse(text).body:
        assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Call), ast.dump(node)
        call = node.value
        calls.append((call.func.id, [ast.literal_eval(a) for a in call.args],
                      {k.arg: ast.literal_eval(k.value) for k in call.keywords}))
    return calls


# -- firmware build: the manifest ------------------------------------------------
@pytest.mark.parametrize("board", ["nucleo", "esp32s3"])
def test_build_freezes_the_runtime_through_a_manifest(tmp_path, capsys, board):
    mp = _fake_tree(tmp_path)
    build = tmp_path / "fw"
    assert main(["firmware", "build", "--board", board, "--micropython", str(mp), "--build-dir", str(build),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    make = [line for line in out.splitlines() if line.startswith("make -C") and "USER_C_MODULES=" in line]
    assert len(make) == 1 and f"FROZEN_MANIFEST={build / 'manifest.py'}" in make[0].split()
    assert not build.exists()  # printed, not written

    plan = plan_build(board, mp, None, build, check_paths=False)
    calls = _manifest_calls(plan.manifest_text)
    # the port's own frozen modules first (asyncio, dht, ... on a stock build), then the runtime
    assert calls[0] == ("include", ["$(PORT_DIR)/boards/manifest.py"], {})
    runtime = [c for c in calls if c[0] == "package" and c[2]["base_path"] == DEVICE.as_posix()]
    assert len(runtime) == 1 and runtime[0][1] == ["kwsrt"]
    # no ulab in this firmware: the ulab-only modules are left out, everything else is frozen
    assert set(runtime[0][2]["files"]) == {p.name for p in (DEVICE / "kwsrt").glob("*.py")} - {"int8ops.py", "frontend.py"}
    assert "loop.py" in runtime[0][2]["files"] and "__init__.py" in runtime[0][2]["files"]
    assert ("package", ["kwsrt"], {"files": ["_build.py"], "base_path": (build / "frozen").as_posix()}) in calls
    assert not any(name == "module" for name, _, _ in calls)  # main.py stays on the filesystem
    assert (DEVICE / "kwsrt" / "__init__.py").is_file()
    # the version marker deploy compares, as MicroPython will import it
    info = {}
    exec(plan.build_info_text, info)
    assert info["DIGEST"] == dep.runtime_digest() and plan.build_info == build / "frozen" / "kwsrt" / "_build.py"
    assert f"cat > {build / 'frozen' / 'kwsrt' / '_build.py'}" in out and "package('kwsrt'" in out


def test_with_ulab_the_whole_package_is_frozen(tmp_path):
    mp = _fake_tree(tmp_path)
    ulab = tmp_path / "ulab"
    (ulab / "code").mkdir(parents=True)
    plan = plan_build("nucleo", mp, ulab, tmp_path / "fw", check_paths=False)
    runtime = [c for c in _manifest_calls(plan.manifest_text) if c[0] == "package" and c[2]["base_path"] == DEVICE.as_posix()]
    assert runtime == [("package", ["kwsrt"], {"base_path": DEVICE.as_posix()})]


def test_build_writes_the_manifest_and_no_freeze_leaves_it_out(tmp_path, monkeypatch):
    from kws_kit import firmware

    mp = _fake_tree(tmp_path)
    plan = plan_build("nucleo", mp, None, tmp_path / "fw", check_paths=False)
    firmware._prepare(plan)
    assert (tmp_path / "fw" / "manifest.py").read_text() == plan.manifest_text
    assert (tmp_path / "fw" / "frozen" / "kwsrt" / "_build.py").read_text() == plan.build_info_text
    assert (tmp_path / "fw" / "kws").resolve() == firmware.KWS_MODULE_DIR  # USER_C_MODULES layout unchanged

    plain = plan_build("nucleo", mp, None, tmp_path / "fw2", check_paths=False, freeze_runtime=False)
    assert plain.manifest is None and not any("FROZEN_MANIFEST" in " ".join(c) for c in plain.commands)


def test_digest_follows_the_runtime_files(fake_runtime):
    first = dep.runtime_digest(fake_runtime)
    (fake_runtime / "main.py").write_text("print('other main')\n")
    assert dep.runtime_digest(fake_runtime) == first  # main.py is not frozen, not part of it
    (fake_runtime / "kwsrt" / "util.py").write_text("def twice(x):\n    return x + x\n")
    assert dep.runtime_digest(fake_runtime) != first
    assert len(first) == 16 and int(first, 16) >= 0


def test_manifest_text_quotes_paths():
    text = manifest_text(Path("/a b/device"), Path("/c'd/frozen"), "nucleo_l476rg")
    calls = _manifest_calls(text)
    assert calls[1][2]["base_path"] == "/a b/device" and calls[2][2]["base_path"] == "/c'd/frozen"
    assert "DIGEST = 'x'" in build_info_text("x")


# -- budgets ------------------------------------------------------------------------
def test_profiles_say_whether_the_runtime_is_frozen_and_what_each_costs():
    nucleo, esp, openmv = load_profile("nucleo"), load_profile("esp32s3"), load_profile("openmv")
    assert nucleo["frozen_runtime"] is True  # its firmware is built by kws-kit anyway (kws C module)
    assert esp["frozen_runtime"] is False and openmv["frozen_runtime"] is False  # stock firmware: from files
    for p in (nucleo, esp, openmv):
        b = p["budget"]
        assert b["runtime_files_bytes"] > b["runtime_bytes"] > 0
        assert runtime_cost(p) == ((b["runtime_bytes"], True) if p["frozen_runtime"] else (b["runtime_files_bytes"], False))
        assert runtime_cost(p, True) == (b["runtime_bytes"], True)
        assert runtime_cost(p, False) == (b["runtime_files_bytes"], False)


def test_budget_counts_the_frozen_or_the_filesystem_runtime():
    p = load_profile("nucleo")
    b = p["budget"]
    model = {"name": "m", "flash_bytes": 20 * 1024, "arena_bytes": 8000, "macs": 1000,
             "input_shape": [49, 10], "n_classes": 4}
    frozen, files = check_fits(model, p), check_fits(model, p, frozen_runtime=False)
    assert frozen.runtime_frozen and frozen.runtime_bytes == b["runtime_bytes"] and "(frozen)" in frozen.summary()
    assert not files.runtime_frozen and files.runtime_bytes == b["runtime_files_bytes"]
    assert files.total_bytes - frozen.total_bytes == b["runtime_files_bytes"] - b["runtime_bytes"]
    assert "(from files)" in files.summary()
    # a model that fits only with the runtime frozen: the error says so
    room = b["heap_budget_bytes"] - b["buffer_bytes"] - b["runtime_bytes"]
    tight = dict(model, flash_bytes=room - 8000)
    assert check_fits(tight, p).fits
    with pytest.raises(ModelError) as err:
        ensure_fits(tight, p, frozen_runtime=False)
    assert "runtime frozen into the firmware" in err.value.one_line() and "firmware build" in err.value.one_line()


def test_dry_run_skips_the_runtime_where_the_firmware_freezes_it(tiny_bundle, fake_runtime, capsys):
    assert main(["deploy", "--board", "nucleo", "--model", str(tiny_bundle), "--dry-run",
                 "--runtime", str(fake_runtime)]) == 0
    out = capsys.readouterr().out
    assert "/flash/main.py" in out and "/flash/model/model.tflite" in out and "lib/kwsrt" not in out
    assert "(frozen)" in out
    assert main(["deploy", "--board", "esp32s3", "--model", str(tiny_bundle), "--dry-run",
                 "--runtime", str(fake_runtime)]) == 0
    out = capsys.readouterr().out
    assert "/lib/kwsrt/util.py" in out and "(from files)" in out


# -- the probe and deploy ---------------------------------------------------------------
def _caps(**kw):
    base = dict(version="1.29.0", platform="linux", machine="", cwd="/", hashlib=True, base64=True, ulab=False,
                kws=False, ml=False, fs_free=None, fs_total=None, mem_free=None)
    base.update(kw)
    return Capabilities(**base)


def test_shadowing_follows_sys_path_order():
    assert not _caps(path=["", ".frozen", "/lib"]).runtime_shadowed("/lib")  # esp32
    assert not _caps(cwd="/flash", path=["", ".frozen", "/flash", "/flash/lib"]).runtime_shadowed("/flash/lib")  # stm32
    assert _caps(path=["", "/lib", ".frozen"]).runtime_shadowed("/lib")
    assert _caps(cwd="/flash", path=["lib", ".frozen"]).runtime_shadowed("/flash/lib")
    assert _caps(path=["", "/lib"]).runtime_shadowed("/lib")  # no frozen modules at all


def test_frozen_runtime_of_another_version_is_refused(fake_runtime):
    profile = load_profile("nucleo")
    assert dep.use_frozen_runtime(profile, _caps(), fake_runtime) == (False, [])
    mine = dep.runtime_digest(fake_runtime)
    assert dep.use_frozen_runtime(profile, _caps(frozen_runtime=mine), fake_runtime) == (True, [])
    for other in ("0123456789abcdef", "?"):
        with pytest.raises(BoardError, match="frozen") as err:
            dep.use_frozen_runtime(profile, _caps(frozen_runtime=other), fake_runtime)
        assert "kws-kit firmware build" in err.value.one_line()
        use, warnings = dep.use_frozen_runtime(profile, _caps(frozen_runtime=other), fake_runtime, force=True)
        assert use and "--force" in warnings[0]


def _frozen_dir(tmp_path, runtime: Path, digest: str | None) -> Path:
    """What a firmware built by kws-kit has frozen: runtime's kwsrt + _build.py."""
    fz = tmp_path / "frozen"
    shutil.copytree(runtime / "kwsrt", fz / "kwsrt")
    (fz / "kwsrt" / "__init__.py").write_text((runtime / "kwsrt" / "__init__.py").read_text() + "WHERE = 'frozen'\n")
    if digest is not None:
        (fz / "kwsrt" / "_build.py").write_text(build_info_text(digest))
    return fz


@needs_micropython
def test_probe_finds_the_frozen_runtime_whatever_is_imported(tmp_path, fake_runtime):
    flash = tmp_path / "flash"
    (flash / "lib" / "kwsrt").mkdir(parents=True)
    (flash / "lib" / "kwsrt" / "__init__.py").write_text("VERSION = 0\nWHERE = 'files'\n")
    fz = _frozen_dir(tmp_path, fake_runtime, "feedfacecafe0001")
    with VirtualBoard(flash, frozen=fz) as vb, Board(vb.port) as b:
        # a running program already imported a runtime (here the filesystem one, which '.frozen' precedes)
        b.exec("import sys\nsys.path.insert(0, '/lib')\nimport kwsrt\nsys.path.pop(0)")
        caps = b.probe()
        assert caps.frozen_runtime == "feedfacecafe0001" and caps.path == ["", ".frozen", "/lib"]
        assert not caps.runtime_shadowed("/lib")
        # the probe leaves sys.path and the imported module as they were
        assert b.exec("import sys, kwsrt\nprint(kwsrt.WHERE, sys.path)").split()[0] == "files"
    with VirtualBoard(flash) as vb, Board(vb.port) as b:  # the same board without it
        assert b.probe().frozen_runtime is None
    (fz / "kwsrt" / "_build.py").unlink()
    with VirtualBoard(flash, frozen=fz) as vb, Board(vb.port) as b:
        assert b.probe().frozen_runtime == "?"


@needs_micropython
def test_deploy_to_a_board_with_the_runtime_frozen_copies_only_model_and_config(tmp_path, tiny_bundle, fake_runtime):
    flash = tmp_path / "flash"
    # an earlier deploy to a stock firmware left a filesystem runtime
    with VirtualBoard(flash) as vb:
        first = dep.deploy("nucleo", tiny_bundle, port=vb.port, runtime_dir=fake_runtime, force=True, reset=False)
    assert first.runtime == "files" and (flash / "lib" / "kwsrt" / "util.py").is_file()
    assert not first.plan.budget.runtime_frozen  # re-checked with the probe's answer
    fz = _frozen_dir(tmp_path, fake_runtime, dep.runtime_digest(fake_runtime))
    messages = []
    with VirtualBoard(flash, frozen=fz) as vb:
        result = dep.deploy("nucleo", tiny_bundle, port=vb.port, runtime_dir=fake_runtime, force=True, reset=False,
                            log=messages.append)
        assert result.runtime == "frozen" and result.plan.budget.runtime_frozen
        assert not any("/lib/kwsrt/" in f.path for f in result.plan.files)
        assert result.copied == [] and result.removed == 2  # main.py, model, config unchanged; stale runtime gone
        assert not (flash / "lib" / "kwsrt").exists() and any("frozen runtime is used" in m for m in messages)
        time.sleep(0.1)
        with Board(vb.port) as b:  # main.py's `import kwsrt` now gets the frozen one
            out = b.exec("exec(open('/main.py').read())\nimport kwsrt\nprint(kwsrt.WHERE)").split()
        assert out == ["main", "1", "frozen"]
        time.sleep(0.1)
        again = dep.deploy("nucleo", tiny_bundle, port=vb.port, runtime_dir=fake_runtime, force=True, reset=False)
        assert again.copied == [] and again.removed == 0


@needs_micropython
def test_cli_refuses_a_frozen_runtime_from_another_kws_kit(tmp_path, tiny_bundle, fake_runtime, capsys):
    fz = _frozen_dir(tmp_path, fake_runtime, "0000000000000000")
    (fz / "kws.py").write_text("class Model:\n    pass\n")  # firmware with the C module, so only the runtime is wrong
    with VirtualBoard(tmp_path / "flash", frozen=fz) as vb:
        rc = main(["deploy", "--board", "nucleo", "--model", str(tiny_bundle), "--port", vb.port,
                   "--runtime", str(fake_runtime)])
        err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "another kws-kit version" in err and "kws-kit firmware build" in err
    assert not (tmp_path / "flash" / "model").exists()


@pytest.mark.skipif(not os.environ.get("KWS_MICROPYTHON_FROZEN"),
                    reason="set KWS_MICROPYTHON_FROZEN to a unix MicroPython built with kws-kit's manifest")
def test_probe_on_a_real_frozen_build(tmp_path):
    with VirtualBoard(tmp_path / "flash", micropython=os.environ["KWS_MICROPYTHON_FROZEN"]) as vb, Board(vb.port) as b:
        caps = b.probe()
        assert caps.frozen_runtime not in (None, "?") and len(caps.frozen_runtime) == 16
        # what MicroPython 1.29 reports for a frozen module: a relative __file__ without '.frozen/'
        assert b.exec("import kwsrt.config\nprint(kwsrt.config.__file__)").strip() == "kwsrt/config.py"
