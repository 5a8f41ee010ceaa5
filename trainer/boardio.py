"""Talking to a MicroPython board over its serial REPL (mpremote's transport as a library).

:class:`Board` opens the port, enters the raw REPL *without* a soft reset (like
``mpremote resume``: a board running the keyword loop is interrupted with
Ctrl-C, and the MicroPython unix port behind ``kws-kit board emulate`` would end
on a soft reset), defines a few helper functions on the board and offers what
deploy needs: a capability probe, file digests computed on the board, chunked
file writes and renames. Every failure is a one-line :class:`BoardError`.

Digests: ``sha256:<hex>`` where the firmware has ``hashlib``, otherwise
``adler32:<hex>`` computed by a small loop on the board (the host computes the
same with zlib), so comparisons never depend on a feature a board lacks.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import io
import os
import time
import zlib

from .errors import BoardError

# Defined once per connection in the board's raw-REPL globals (names start with _k to stay out of the way).
# os.rename is done inside the file's folder: MicroPython's VfsPosix with a root (the virtual board)
# mangles absolute two-path calls, and a relative rename works on every port.
BOARD_HELPERS = r"""
import os, gc, sys
try:
    import hashlib as _khl
    _khl.sha256
except (ImportError, AttributeError):
    _khl = None
try:
    from binascii import a2b_base64 as _ka2b
except ImportError:
    _ka2b = None
def _kex(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
def _krm(p):
    try:
        os.remove(p)
    except OSError:
        pass
def _kmv(a, b):
    d, x = a.rsplit('/', 1)
    y = b.rsplit('/', 1)[1]
    c = os.getcwd()
    os.chdir(d or '/')
    try:
        os.rename(x, y)
    finally:
        os.chdir(c)
def _krmtree(p):
    n = 0
    try:
        names = os.listdir(p)
    except OSError:
        return 0
    for x in names:
        q = p + '/' + x
        try:
            os.remove(q)
            n += 1
        except OSError:
            n += _krmtree(q)
    os.rmdir(p)
    return n
def _kmkdirs(p):
    q = ''
    for part in p.split('/'):
        if not part:
            continue
        q += '/' + part
        if not _kex(q):
            os.mkdir(q)
def _kdig(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    buf = bytearray(512)
    mv = memoryview(buf)
    if _khl:
        h = _khl.sha256()
    else:
        s1 = 1
        s2 = 0
    while True:
        n = f.readinto(buf)
        if not n:
            break
        if _khl:
            h.update(mv[:n])
        else:
            for i in range(n):
                s1 = (s1 + buf[i]) % 65521
                s2 = (s2 + s1) % 65521
    f.close()
    if _khl:
        return 'sha256:' + ''.join('%02x' % b for b in h.digest())
    return 'adler32:%08x' % ((s2 << 16) | s1)
def _kcommit(items, j):
    f = open(j + '.new', 'w')
    f.write(repr(items))
    f.close()
    _krm(j)
    _kmv(j + '.new', j)
    for p, existed in items:
        _krm(p + '.bak')
        if existed:
            _kmv(p, p + '.bak')
        _kmv(p + '.new', p)
    os.remove(j)
    for p, existed in items:
        _krm(p + '.bak')
def _krollback(j):
    try:
        f = open(j)
        items = eval(f.read())
        f.close()
    except (OSError, SyntaxError):
        _krm(j)
        return 0
    for p, existed in items:
        if _kex(p + '.bak'):
            _krm(p)
            _kmv(p + '.bak', p)
        elif not existed:
            _krm(p)
        _krm(p + '.new')
    os.remove(j)
    return len(items)
"""

PROBE = r"""
def _kfrozen():
    # The kwsrt frozen into the firmware, whatever sys.path says and whatever is already
    # imported: its kwsrt._build.DIGEST, '?' for a frozen kwsrt without one, None for none.
    saved = sys.path[:]
    old = {}
    for k in list(sys.modules):
        if k == 'kwsrt' or k.startswith('kwsrt.'):
            old[k] = sys.modules.pop(k)
    sys.path.clear()
    sys.path.append('.frozen')
    d = None
    try:
        __import__('kwsrt')
        d = '?'
        d = __import__('kwsrt._build', None, None, ['DIGEST']).DIGEST
    except (ImportError, AttributeError):
        pass
    finally:
        sys.path.clear()
        sys.path.extend(saved)
        for k in list(sys.modules):
            if k == 'kwsrt' or k.startswith('kwsrt.'):
                del sys.modules[k]
        sys.modules.update(old)
    return d
def _kprobe():
    r = {'version': '.'.join(str(v) for v in sys.implementation.version[:3]), 'platform': sys.platform,
         'machine': getattr(sys.implementation, '_machine', ''), 'cwd': os.getcwd(),
         'hashlib': _khl is not None, 'base64': _ka2b is not None}
    # A folder named like a module imports as a namespace package, so look for the API, not the name.
    for name, attr in (('ulab', 'numpy'), ('kws', 'Model'), ('ml', 'Model')):
        try:
            r[name] = hasattr(__import__(name), attr)
        except ImportError:
            r[name] = False
    r['path'] = list(sys.path)
    r['frozen_runtime'] = _kfrozen()
    try:
        s = os.statvfs(r['cwd'])
        r['fs_free'] = (s[1] or s[0]) * s[4]
        r['fs_total'] = (s[1] or s[0]) * s[2]
    except (OSError, AttributeError):
        r['fs_free'] = r['fs_total'] = None
    gc.collect()
    try:
        r['mem_free'] = gc.mem_free()
    except AttributeError:
        r['mem_free'] = None
    return r
print(repr(_kprobe()))
"""


@dataclasses.dataclass
class Capabilities:
    version: str
    platform: str
    machine: str
    cwd: str
    hashlib: bool
    base64: bool
    ulab: bool
    kws: bool
    ml: bool
    fs_free: int | None
    fs_total: int | None
    mem_free: int | None
    path: list = dataclasses.field(default_factory=list)   # the board's sys.path
    frozen_runtime: str | None = None   # DIGEST of a kwsrt frozen into the firmware, '?' without one, None: none

    def runtime_shadowed(self, lib_dir: str) -> bool:
        """Whether a kwsrt package in ``lib_dir`` would be imported instead of the frozen one."""
        def index(entry):
            return self.path.index(entry) if entry in self.path else len(self.path)

        cwd = self.cwd.rstrip("/")
        lib = lib_dir.rstrip("/")
        entries = {lib}
        if cwd and lib.startswith(cwd + "/"):
            entries.add(lib[len(cwd) + 1:])  # a relative sys.path entry such as 'lib'
        if not cwd and lib.startswith("/"):
            entries.add(lib[1:])
        return min(index(e) for e in entries) < index(".frozen")

    @property
    def digest_algo(self) -> str:
        return "sha256" if self.hashlib else "adler32"

    def has(self, feature: str) -> bool:
        return bool(getattr(self, {"openmv_ml": "ml"}.get(feature, feature), False))


def local_digest(data: bytes, algo: str) -> str:
    """The digest the board's ``_kdig`` reports for the same bytes."""
    if algo == "sha256":
        return "sha256:" + hashlib.sha256(data).hexdigest()
    if algo == "adler32":
        return f"adler32:{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    raise ValueError(f"unknown digest {algo!r}")


def find_port(usb_ids=(), board_title: str = "the board") -> str:
    """The one serial port whose USB vid:pid is in ``usb_ids``; BoardError when none or several."""
    from serial.tools import list_ports

    wanted = {i.lower() for i in usb_ids}
    ports = list(list_ports.comports())
    matches = [p.device for p in ports if p.vid is not None and f"{p.vid:04x}:{p.pid:04x}" in wanted]
    if len(matches) == 1:
        return matches[0]
    seen = ", ".join(p.device for p in ports) or "none"
    if not matches:
        raise BoardError(f"no {board_title} found on USB (serial ports seen: {seen})",
                         hint="plug it in or pass --port, e.g. --port /dev/ttyACM0 or COM3")
    raise BoardError(f"several boards found ({', '.join(matches)})", hint="pick one with --port")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class Board:
    """A connected MicroPython board in raw-REPL mode. Use as a context manager."""

    def __init__(self, port: str, *, baudrate: int = 115200, timeout: float = 10.0):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        self._check_port_opens(port, baudrate)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # mpremote prints raw bytes on failure
                # A read timeout: on a pty mpremote reads without checking what is waiting, and a port where
                # nothing answers would block forever; its own loops treat an empty read as "nothing yet".
                self.transport = SerialTransport(port, baudrate=baudrate, timeout=min(2.0, timeout))
        except (TransportError, OSError) as exc:
            raise BoardError(f"cannot open {port}: {_one_line(exc)}") from None
        try:
            # A board that is rebooting (after a reset, or the virtual board restarting) can swallow the
            # first Ctrl-C/Ctrl-A: try again a few times within the timeout.
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        self.transport.enter_raw_repl(soft_reset=False, timeout_overall=min(timeout, 2.0))
                    break
                except TransportError:
                    if time.monotonic() >= deadline:
                        raise
        except Exception as exc:  # TransportError, SerialException, OSError
            self._close_quietly()
            raise BoardError(f"{port} does not answer like a MicroPython REPL ({_one_line(exc)})",
                             hint="wrong port? is a program like OpenMV IDE or a terminal holding the board, "
                                  "or is it in bootloader mode?") from None
        self._caps: Capabilities | None = None
        self.exec(BOARD_HELPERS)

    @staticmethod
    def _check_port_opens(port: str, baudrate: int) -> None:
        """Open the port once ourselves: pyserial's reason (missing, busy, permission) beats mpremote's."""
        import serial

        if "://" not in port and not os.path.exists(port) and os.name != "nt":
            raise BoardError(f"no serial port {port}", hint="check the cable; `kws-kit deploy` without --port finds the board by its USB id")
        try:
            probe = serial.serial_for_url(port, baudrate=baudrate, exclusive=True, timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            text = _one_line(exc)
            hint = None
            if "busy" in text.lower() or "lock" in text.lower():
                hint = "another program (a terminal, mpremote, OpenMV IDE, kws-kit monitor) holds the port: close it"
            elif "permission" in text.lower():
                hint = "on Linux add yourself to the dialout group (then log in again)"
            raise BoardError(f"cannot open {port}: {text}", hint=hint) from None
        probe.close()

    # -- plumbing -------------------------------------------------------------
    def _close_quietly(self) -> None:
        try:
            self.transport.close()
        except Exception:
            pass

    def exec(self, code: str) -> str:
        """Run code on the board and return what it printed; errors become BoardError."""
        from mpremote.transport import TransportExecError

        try:
            return self.transport.exec(code).decode(errors="replace")
        except TransportExecError as exc:
            lines = [line for line in exc.error_output.strip().splitlines() if line.strip()]
            raise BoardError(f"the board reported: {lines[-1] if lines else 'an error'}") from None
        except Exception as exc:
            raise BoardError(f"lost the connection to the board on {self.port} ({_one_line(exc)})",
                             hint="check the cable and try again; the board keeps its previous files") from None

    def eval(self, code: str):
        """Run code that prints one Python literal and return its value."""
        out = self.exec(code).strip()
        try:
            return ast.literal_eval(out.splitlines()[-1])
        except (ValueError, SyntaxError, IndexError):
            raise BoardError(f"unexpected answer from the board: {out[:80]!r}") from None

    def close(self) -> None:
        try:
            self.transport.exit_raw_repl()
        except Exception:
            pass
        self._close_quietly()

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what deploy needs ----------------------------------------------------
    def probe(self) -> Capabilities:
        if self._caps is None:
            self._caps = Capabilities(**self.eval(PROBE))
        return self._caps

    def digests(self, paths) -> dict[str, str | None]:
        paths = list(paths)
        if not paths:
            return {}
        values = self.eval(f"print(repr([_kdig(p) for p in {paths!r}]))")
        return dict(zip(paths, values))

    def mkdirs(self, folder: str) -> None:
        self.exec(f"_kmkdirs({folder!r})")

    def remove_tree(self, folder: str) -> int:
        """Delete ``folder`` and everything in it; the number of files removed (0 when it does not exist)."""
        return int(self.eval(f"print(_krmtree({folder!r}))"))

    def remove(self, paths) -> None:
        self.exec(f"for _p in {list(paths)!r}:\n    _krm(_p)")

    def write_file(self, path: str, data: bytes, progress=None) -> None:
        """Write ``data`` to ``path`` in chunks (base64 where the firmware has binascii)."""
        caps = self.probe()
        self.exec(f"_kf = open({path!r}, 'wb')")
        try:
            if caps.base64:
                import base64

                step = 768  # 1 KB of base64 per exec: small enough for an 88 KB heap
                for start in range(0, len(data), step):
                    chunk = base64.b64encode(data[start:start + step])
                    self.exec(f"_kf.write(_ka2b({chunk!r}))")
                    if progress:
                        progress(min(start + step, len(data)))
            else:
                step = 256
                for start in range(0, len(data), step):
                    self.exec(f"_kf.write({data[start:start + step]!r})")
                    if progress:
                        progress(min(start + step, len(data)))
        finally:
            try:
                self.exec("_kf.close()")
            except BoardError:
                pass

    def commit(self, items: list[tuple[str, bool]], journal: str) -> None:
        """Swap every ``path.new`` into ``path`` in one exec on the board (see deploy.py)."""
        self.exec(f"_kcommit({items!r}, {journal!r})")

    def rollback(self, journal: str) -> int:
        """Undo a commit that a reset or a lost connection interrupted; the number of files restored."""
        return int(self.eval(f"print(_krollback({journal!r}))"))

    def soft_reset(self) -> None:
        """Leave the raw REPL and soft-reset so the board boots into main.py."""
        try:
            self.transport.exit_raw_repl()
            self.transport.serial.write(b"\x04")
        except Exception as exc:
            raise BoardError(f"could not reset the board on {self.port} ({_one_line(exc)})") from None
