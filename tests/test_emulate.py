"""The virtual board: mpremote talks to the MicroPython unix port on a pty; the folder is its flash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from virtual_board import needs_micropython, virtual_board  # noqa: F401

from kws_kit.boardio import Board


def _mpremote(port, *args, timeout=30):
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "resume", *args],
                          capture_output=True, text=True, timeout=timeout)


@needs_micropython
def test_mpremote_cli_runs_code_and_copies_into_the_folder(virtual_board, tmp_path):
    done = _mpremote(virtual_board.port, "exec", "import sys; print(sys.implementation.name, 6 * 7)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["micropython", "42"]
    src = tmp_path / "hello.py"
    src.write_text("GREETING = 'hi'\n")
    done = _mpremote(virtual_board.port, "fs", "mkdir", ":lib", "+", "fs", "cp", str(src), ":lib/hello.py")
    assert done.returncode == 0, done.stderr
    assert (virtual_board.folder / "lib" / "hello.py").read_text() == src.read_text()
    done = _mpremote(virtual_board.port, "exec", "import hello; print(hello.GREETING)")
    assert done.stdout.strip() == "hi"


@needs_micropython
def test_exit_reboots_and_files_survive(virtual_board):
    with Board(virtual_board.port) as board:
        board.write_file("/keep.txt", b"kept")
        assert board.probe().cwd == "/" and board.probe().hashlib
    assert virtual_board.boots == 1
    _mpremote(virtual_board.port, "exec", "import sys; sys.exit()")
    deadline = time.monotonic() + 5
    while virtual_board.boots < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert virtual_board.boots == 2
    time.sleep(0.2)
    with Board(virtual_board.port) as board:
        assert board.exec("print(open('/keep.txt').read())").strip() == "kept"
        # a fresh interpreter: nothing defined by the previous session
        assert board.exec("print('_kf' in globals())").strip() == "False"


@needs_micropython
def test_board_heap_size_is_applied(tmp_path):
    from kws_kit.emulate import VirtualBoard

    with VirtualBoard(tmp_path / "flash", heap_bytes=90112) as vb, Board(vb.port) as board:
        free = board.probe().mem_free
    assert 0 < free < 90112


@needs_micropython
def test_emulate_command_prints_the_port(tmp_path):
    # Ctrl-C must reach the command even when this test runs as a background job (a shell
    # starts those with SIGINT ignored, and Python keeps an inherited SIG_IGN).
    proc = subprocess.Popen([sys.executable, "-c", "from kws_kit.cli import run; run()", "board", "emulate", "--dir", str(tmp_path / "vb")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/")
        done = _mpremote(port, "exec", "print(1 + 1)")
        assert done.stdout.strip() == "2"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert proc.returncode == 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@needs_micropython
def test_emulate_command_stops_its_interpreter_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "from kws_kit.cli import run; run()", "board", "emulate", "--dir", str(tmp_path / "vb")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/")
        assert _mpremote(port, "exec", "print(6 * 7)").stdout.strip() == "42"
        children = _children(proc.pid)
        assert len(children) == 1  # the MicroPython interpreter
        child = children[0]
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        raise AssertionError("the MicroPython process outlived kws-kit board emulate")
