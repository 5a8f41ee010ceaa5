"""kws-kit deploy: budget before copying, firmware probe, atomic journaled copy, only changed files.

End-to-end against the virtual board (MicroPython unix port on a pty, no ulab):
such a board lacks the modules the runtime needs, so deploys here pass
``force=True`` / ``--force`` except where the refusal itself is tested.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import time
from pathlib import Path

import pytest

from virtual_board import fake_runtime, needs_micropython, tiny_bundle, tiny_tflite, virtual_board, write_bundle  # noqa: F401

from kws_kit import deploy as dep
from kws_kit.boardio import Board
from kws_kit.boards import load_profile
from kws_kit.cli import main
from kws_kit.emulate import VirtualBoard
from kws_kit.errors import BoardError, ModelError


def _board_files(flash: Path) -> dict[str, str]:
    return {"/" + str(p.relative_to(flash)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in flash.rglob("*") if p.is_file()}


def _never(*args, **kwargs):
    raise AssertionError("deploy touched a board")


def test_dry_run_lists_files_and_budget(tiny_bundle, fake_runtime, capsys):
    rc = main(["deploy", "--board", "nucleo", "--model", str(tiny_bundle), "--dry-run", "--runtime", str(fake_runtime)])
    out = capsys.readouterr().out
    assert rc == 0
    for path in ("/flash/main.py", "/flash/model/model.tflite", "/flash/model/config.json"):
        assert path in out
    assert "lib/kwsrt" not in out  # the Nucleo's firmware has the runtime frozen in (test_frozen_runtime.py)
    assert "fits nucleo_l476rg" in out
    assert "metadata.json" not in out  # host-only files stay home


def test_config_follows_profile_and_actions(tiny_bundle, fake_runtime):
    plan = dep.plan_deploy("esp32s3", tiny_bundle, actions=["go=led:100", "go=print", "stop=pin:7:50"],
                           runtime_dir=fake_runtime)
    cfg = json.loads(plan.file("/model/config.json").data)
    profile = load_profile("esp32s3")
    assert cfg["audio"] == profile["audio"] and cfg["led_pin"] == profile["led"]["pin"]
    assert cfg["actions"] == {"go": [{"do": "led", "pin": "LED", "ms": 100}, {"do": "print"}],
                              "stop": [{"do": "pin", "pin": "7", "ms": 50}]}
    assert cfg["runner"] == ["kws", "ulab"] and cfg["bundle_dir"] == "/model"
    default = json.loads(dep.plan_deploy("esp32s3", tiny_bundle, runtime_dir=fake_runtime).file("/model/config.json").data)
    assert sorted(default["actions"]) == ["go", "stop"]  # every keyword, not _silence_/_unknown_
    with pytest.raises(ModelError, match="no label 'yes'"):
        dep.plan_deploy("esp32s3", tiny_bundle, actions=["yes=led"], runtime_dir=fake_runtime)
    with pytest.raises(BoardError, match="unknown action"):
        dep.plan_deploy("esp32s3", tiny_bundle, actions=["go=buzz"], runtime_dir=fake_runtime)


def test_over_budget_is_refused_before_any_board_contact(tiny_bundle, fake_runtime):
    profile = load_profile("nucleo")
    profile["budget"]["heap_budget_bytes"] = profile["budget"]["runtime_bytes"] + profile["budget"]["buffer_bytes"] + 1000
    with pytest.raises(ModelError, match=r"does not fit nucleo_l476rg: over by \d+ bytes") as err:
        dep.deploy(profile, tiny_bundle, port="/dev/whatever", runtime_dir=fake_runtime, board_factory=_never)
    assert "zoo model" in err.value.one_line()


def test_unknown_board_lists_known_ones(tiny_bundle, capsys):
    rc = main(["deploy", "--board", "arduino", "--model", str(tiny_bundle), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "unknown board 'arduino'" in err and "nucleo_l476rg" in err and "esp32s3" in err and "openmv" in err


def test_missing_wrong_and_busy_ports_are_one_line_errors(tiny_bundle, fake_runtime, capsys, tmp_path, virtual_board):
    rc = main(["deploy", "--board", "nucleo", "--model", str(tiny_bundle), "--port", "/dev/ttyNOPE9",
               "--runtime", str(fake_runtime)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "no serial port /dev/ttyNOPE9" in err

    # no --port and no board on USB: told to plug it in or pass --port
    with pytest.raises(BoardError, match="no ST Nucleo-L476RG found on USB"):
        dep.deploy("nucleo", tiny_bundle, runtime_dir=fake_runtime)

    # a port where nothing speaks MicroPython
    master, slave = pty.openpty()
    try:
        with pytest.raises(BoardError, match="does not answer like a MicroPython REPL"):
            Board(os.ttyname(slave), timeout=0.5)
    finally:
        os.close(master)
        os.close(slave)

    # a port another program holds
    import serial

    holder = serial.Serial(virtual_board.port, exclusive=True)
    try:
        rc = main(["deploy", "--board", "nucleo", "--model", str(tiny_bundle), "--port", virtual_board.port,
                   "--runtime", str(fake_runtime), "--force"])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and len(err.splitlines()) == 1 and "another program" in err
    finally:
        holder.close()


@needs_micropython
def test_board_without_modules_gets_a_clear_message(tiny_bundle, fake_runtime, virtual_board, capsys):
    for board, needs in (("nucleo", "'kws' or 'ulab'"), ("openmv", "'ml' or 'ulab'"), ("esp32s3", "'kws' or 'ulab'")):
        rc = main(["deploy", "--board", board, "--model", str(tiny_bundle), "--port", virtual_board.port,
                   "--runtime", str(fake_runtime)])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and len(err.splitlines()) == 1
        assert needs in err and "firmware" in err
    assert not (virtual_board.folder / "model").exists()  # nothing copied


@needs_micropython
def test_deploy_lands_files_with_right_hashes_and_redeploys_only_changes(tiny_bundle, fake_runtime, virtual_board):
    flash = virtual_board.folder
    first = dep.deploy("nucleo", tiny_bundle, port=virtual_board.port, runtime_dir=fake_runtime, force=True)
    expected = {f.path: hashlib.sha256(f.data).hexdigest() for f in first.plan.files}
    assert _board_files(flash) == expected  # nothing else: no .new / .bak / journal left
    assert sorted(first.copied) == sorted(expected) and first.plan.root == "/"
    assert "/model/model.tflite" in expected and "/lib/kwsrt/__init__.py" in expected

    time.sleep(0.2)  # the soft reset reboots the virtual board
    again = dep.deploy("nucleo", tiny_bundle, port=virtual_board.port, runtime_dir=fake_runtime, force=True)
    assert again.copied == [] and len(again.unchanged) == len(expected)

    rec = json.loads((tiny_bundle / "recognizer.json").read_text())
    rec["detection_threshold"] = 0.75
    (tiny_bundle / "recognizer.json").write_text(json.dumps(rec))
    (fake_runtime / "kwsrt" / "util.py").write_text("def twice(x):\n    return x + x\n")
    time.sleep(0.2)
    third = dep.deploy("nucleo", tiny_bundle, port=virtual_board.port, runtime_dir=fake_runtime, force=True)
    assert sorted(third.copied) == ["/lib/kwsrt/util.py", "/model/recognizer.json"]
    assert third.bytes_copied == len((tiny_bundle / "recognizer.json").read_bytes()) + len((fake_runtime / "kwsrt" / "util.py").read_bytes())
    assert json.loads((flash / "model/recognizer.json").read_text())["detection_threshold"] == 0.75

    # the deployed runtime imports on the board
    time.sleep(0.2)
    with Board(virtual_board.port) as board:
        assert board.exec("import kwsrt\nfrom kwsrt import util\nprint(kwsrt.VERSION, util.twice(21))").split() == ["1", "42"]


@needs_micropython
def test_power_cut_during_upload_keeps_the_old_set(tmp_path, tiny_tflite, fake_runtime):
    flash = tmp_path / "flash"
    old = write_bundle(tmp_path / "old", tiny_tflite, labels=["_silence_", "_unknown_", "go", "stop"])
    new = write_bundle(tmp_path / "new", tiny_tflite, labels=["_silence_", "_unknown_", "on", "off"])
    (new / "model.tflite").write_bytes(tiny_tflite[:-64] + bytes(64))  # differs: several chunks to upload
    with VirtualBoard(flash) as vb:
        dep.deploy("nucleo", old, port=vb.port, runtime_dir=fake_runtime, force=True, reset=False)
    before = _board_files(flash)

    board = VirtualBoard(flash).start()

    def pull_the_plug(path, done, total):
        if path.endswith("model.tflite") and done < total:
            board.kill()

    with pytest.raises(BoardError, match="lost the connection"):
        dep.deploy("nucleo", new, port=board.port, runtime_dir=fake_runtime, force=True, progress=pull_the_plug)
    board.kill()
    after = {p: h for p, h in _board_files(flash).items() if not p.endswith(".new")}
    assert after == before  # old set intact (a half-written .new may remain until the next deploy)

    with VirtualBoard(flash) as fresh, Board(fresh.port) as b:
        labels = b.exec("print(open('/model/labels.txt').read().split())")
        assert "go" in labels and "on" not in labels
        assert b.digests(["/model/model.tflite"])["/model/model.tflite"] == "sha256:" + hashlib.sha256(tiny_tflite).hexdigest()
    with VirtualBoard(flash) as fresh:
        result = dep.deploy("nucleo", new, port=fresh.port, runtime_dir=fake_runtime, force=True, reset=False)
    assert not any(p.endswith((".new", ".bak")) for p in _board_files(flash))
    assert "/model/labels.txt" in result.copied and (flash / "model/labels.txt").read_text().split()[2] == "on"


@needs_micropython
def test_interrupted_swap_is_rolled_back_on_the_next_connection(tmp_path, tiny_tflite, fake_runtime):
    flash = tmp_path / "flash"
    bundle = write_bundle(tmp_path / "b", tiny_tflite)
    with VirtualBoard(flash) as vb:
        dep.deploy("nucleo", bundle, port=vb.port, runtime_dir=fake_runtime, force=True, reset=False)
    old_model = (flash / "model/model.tflite").read_bytes()
    old_labels = (flash / "model/labels.txt").read_bytes()
    # what a reset half-way through the swap leaves: journal, model swapped, labels moved aside, a new file in place
    (flash / ".kws_deploy").write_text(repr([["/model/model.tflite", True], ["/model/labels.txt", True],
                                             ["/model/extra.bin", False]]))
    (flash / "model/model.tflite").rename(flash / "model/model.tflite.bak")
    (flash / "model/model.tflite").write_bytes(b"new model")
    (flash / "model/labels.txt").rename(flash / "model/labels.txt.bak")
    (flash / "model/extra.bin").write_bytes(b"x")
    with VirtualBoard(flash) as vb:
        messages = []
        result = dep.deploy("nucleo", bundle, port=vb.port, runtime_dir=fake_runtime, force=True, reset=False,
                            log=messages.append)
    assert result.restored == 3 and "interrupted" in messages[0]
    assert result.copied == []  # the previous set is back, and it is what we deploy
    assert (flash / "model/model.tflite").read_bytes() == old_model and (flash / "model/labels.txt").read_bytes() == old_labels
    assert not (flash / "model/extra.bin").exists() and not (flash / ".kws_deploy").exists()


@needs_micropython
def test_cli_deploy_to_virtual_board(tiny_bundle, fake_runtime, virtual_board, capsys):
    args = ["deploy", "--board", "esp32s3", "--model", str(tiny_bundle), "--port", virtual_board.port,
            "--runtime", str(fake_runtime), "--force", "--on", "go=led", "--verbose"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "copied" in err and "lacks firmware modules" in err
    cfg = json.loads((virtual_board.folder / "model/config.json").read_text())
    assert cfg["verbose"] is True and cfg["actions"] == {"go": [{"do": "led", "pin": "LED", "ms": 500}]}
    time.sleep(0.2)
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("KWS_MICROPYTHON"), reason="set KWS_MICROPYTHON to a micropython with ulab")
def test_real_runtime_runs_the_model_on_a_ulab_virtual_board(tiny_bundle, tmp_path):
    with VirtualBoard(tmp_path / "flash", micropython=os.environ["KWS_MICROPYTHON"]) as vb:
        result = dep.deploy("nucleo", tiny_bundle, port=vb.port, reset=False)
        assert result.runner == "ulab" and result.frontend == "ulab"
        with Board(vb.port) as b:
            out = b.exec("from kwsrt import config, runners\n"
                         "bn = config.read_bundle('/model')\n"
                         "r = runners.make_runner(bn['model'], None, ('ulab',))\n"
                         "print(len(r.invoke(bytes(490))))")
    assert out.split()[-1] == "4"
