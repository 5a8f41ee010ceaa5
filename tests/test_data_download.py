"""Downloader (resume, checksums) and safe extraction, against a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kws_kit.cli import main
from kws_kit.data import download as dl
from kws_kit.errors import KwsError

from conftest import make_word_folder


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server naming)
        server = self.server
        body = server.files.get(self.path)
        requested = self.headers.get("Range")
        server.requests.append((self.path, requested))
        if body is None:
            self.send_error(404)
            return
        start = 0
        if requested and not server.ignore_range:
            start = int(requested.split("=", 1)[1].split("-", 1)[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if server.cuts_left > 0:  # announce everything, send half, hang up
            server.cuts_left -= 1
            payload = payload[: len(payload) // 2]
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files, server.requests, server.cuts_left, server.ignore_range = {}, [], 0, False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def _one_error_line(err: str) -> str:
    """The CLI reports a problem as exactly one 'error:' line and no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _payload(n=300_000) -> bytes:
    return bytes((i * 7919) % 251 for i in range(n))


def test_download_resumes_after_cut_off(http_server, tmp_path):
    body = _payload()
    http_server.files["/data.bin"] = body
    http_server.cuts_left = 1
    out = dl.download(http_server.url + "/data.bin", tmp_path / "data.bin", retry_wait_s=0,
                      expected_sha256=hashlib.sha256(body).hexdigest(), expected_size=len(body))
    assert out.read_bytes() == body
    assert not (tmp_path / "data.bin.part").exists()
    assert len(http_server.requests) == 2
    assert http_server.requests[1][1] == f"bytes={len(body) // 2}-"


def test_download_resumes_part_file_from_earlier_run(http_server, tmp_path):
    body = _payload()
    http_server.files["/data.bin"] = body
    (tmp_path / "data.bin.part").write_bytes(body[:1000])
    dl.download(http_server.url + "/data.bin", tmp_path / "data.bin", expected_sha256=hashlib.sha256(body).hexdigest())
    assert (tmp_path / "data.bin").read_bytes() == body
    assert http_server.requests == [("/data.bin", "bytes=1000-")]


def test_download_restarts_when_server_ignores_range(http_server, tmp_path):
    body = _payload()
    http_server.files["/data.bin"] = body
    http_server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"garbage" * 100)
    dl.download(http_server.url + "/data.bin", tmp_path / "data.bin", expected_sha256=hashlib.sha256(body).hexdigest())
    assert (tmp_path / "data.bin").read_bytes() == body


def test_download_complete_part_gets_416_and_is_used(http_server, tmp_path):
    body = _payload(5000)
    http_server.files["/data.bin"] = body
    (tmp_path / "data.bin.part").write_bytes(body)
    dl.download(http_server.url + "/data.bin", tmp_path / "data.bin", expected_sha256=hashlib.sha256(body).hexdigest())
    assert (tmp_path / "data.bin").read_bytes() == body


def test_checksum_mismatch_is_an_error_and_file_is_not_used(http_server, tmp_path):
    http_server.files["/data.bin"] = _payload(5000)
    with pytest.raises(KwsError, match="checksum mismatch"):
        dl.download(http_server.url + "/data.bin", tmp_path / "data.bin", expected_sha256="0" * 64)
    assert not (tmp_path / "data.bin").exists()
    assert (tmp_path / "data.bin.unverified").exists()


def test_size_mismatch_and_http_errors(http_server, tmp_path):
    http_server.files["/data.bin"] = _payload(5000)
    with pytest.raises(KwsError, match="offers 5000 bytes, expected 4999"):
        dl.download(http_server.url + "/data.bin", tmp_path / "a.bin", expected_size=4999)
    with pytest.raises(KwsError, match="HTTP 404"):
        dl.download(http_server.url + "/missing.bin", tmp_path / "b.bin")


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(KwsError, match="cannot download"):
        dl.download("http://127.0.0.1:9/x.tar.gz", tmp_path / "x.tar.gz", retries=1, retry_wait_s=0, timeout=2)
    with pytest.raises(KwsError, match="unknown url type") as err:  # was an internal ValueError
        dl.download("mirror.example.org/sc.tar.gz", tmp_path / "y.tar.gz")
    assert "http(s)://" in err.value.one_line()


def test_download_keeps_breaking_off(http_server, tmp_path):
    http_server.files["/data.bin"] = _payload()
    http_server.cuts_left = 10
    with pytest.raises(KwsError, match="stopped at|breaking off") as err:
        dl.download(http_server.url + "/data.bin", tmp_path / "data.bin", retries=2, retry_wait_s=0)
    assert "run the same command again to resume" in err.value.one_line()
    assert (tmp_path / "data.bin.part").stat().st_size > 0  # kept for the next run to resume


# --------------------------------------------------------------------------- extraction


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"ok") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


@pytest.mark.parametrize(
    "bad, why",
    [
        (_file("../escaped.txt"), "'..'"),
        (_file("good/../../escaped.txt"), "'..'"),
        (_file("/tmp/kws-kit-test-absolute-escape.txt"), "absolute path"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_special("hard", tarfile.LNKTYPE, "good/a.txt"), "link"),
        (_special("fifo", tarfile.FIFOTYPE), "device or FIFO"),
        (_special("dev", tarfile.CHRTYPE), "device or FIFO"),
    ],
)
def test_malicious_archives_are_refused_and_nothing_is_written(tmp_path, bad, why):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_bytes([_file("good/a.txt"), bad, _file("good/b.txt")]))
    dest = tmp_path / "out" / "dataset"
    with pytest.raises(KwsError, match=why) as err:
        dl.safe_extract(archive, dest)
    assert "nothing was extracted" in str(err.value)
    assert not dest.exists()
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "escaped.txt").exists()
    assert not Path("/tmp/kws-kit-test-absolute-escape.txt").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # temp folder cleaned up


def test_truncated_and_corrupt_archives(tmp_path):
    good = _tar_bytes([_file("a/x.bin", _payload(200_000))])
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(KwsError, match="corrupt or truncated"):
        dl.safe_extract(truncated, tmp_path / "t")
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"not really gzip" * 100)
    with pytest.raises(KwsError, match="corrupt or truncated"):
        dl.safe_extract(garbage, tmp_path / "g")
    assert not (tmp_path / "t").exists() and not (tmp_path / "g").exists()


def test_single_top_level_folder_is_flattened(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_bytes([_file("top/yes/a.wav", b"1"), _file("top/readme.txt", b"2")]))
    dest = dl.safe_extract(archive, tmp_path / "d")
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["readme.txt", "yes", "yes/a.wav"]


# --------------------------------------------------------------------------- kws-kit data fetch


def _speech_commands_tarball(tmp_path: Path) -> bytes:
    src = make_word_folder(tmp_path / "sc_src", {"yes": 1, "no": 1, "cat": 1}, [f"s{i}" for i in range(10)])
    (src / "validation_list.txt").write_text("yes/s1_nohash_0.wav\nno/s1_nohash_0.wav\ncat/s1_nohash_0.wav\n")
    (src / "testing_list.txt").write_text("yes/s2_nohash_0.wav\nno/s2_nohash_0.wav\ncat/s2_nohash_0.wav\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname="./" + path.relative_to(src).as_posix(), recursive=False)
    return buffer.getvalue()


def test_fetch_command_downloads_extracts_and_curates(http_server, tmp_path, capsys):
    body = _speech_commands_tarball(tmp_path)
    http_server.files["/speech_commands_v0.02.tar.gz"] = body
    http_server.cuts_left = 1
    dest = tmp_path / "data" / "speech_commands"
    rc = main(["data", "fetch", "speech-commands", "--dest", str(dest),
               "--url", http_server.url + "/speech_commands_v0.02.tar.gz",
               "--sha256", hashlib.sha256(body).hexdigest()])
    assert rc == 0, capsys.readouterr().err
    assert (dest / "yes" / "s0_nohash_0.wav").is_file() and (dest / "validation_list.txt").is_file()
    assert not (tmp_path / "data" / "speech_commands_v0.02.tar.gz").exists()  # own download removed
    # the official lists at the root are used for the split
    out = tmp_path / "curated"
    assert main(["data", "curate", "--keywords", "yes", "--source", str(dest), "--out", str(out)]) == 0
    text = (out / "manifest.csv").read_text()
    assert "validation,yes,yes" in text and "/yes/s1_nohash_0.wav" in text
    assert "official lists (root)" in (out / "dataset.json").read_text()

    # existing destination: one-line error, nothing touched
    capsys.readouterr()
    rc = main(["data", "fetch", "speech-commands", "--dest", str(dest), "--from-archive", str(tmp_path / "none.tgz")])
    err = capsys.readouterr().err
    assert rc == 1 and "already exists" in _one_error_line(err)


def test_fetch_from_archive_and_checksum_errors(tmp_path, capsys):
    body = _speech_commands_tarball(tmp_path)
    archive = tmp_path / "sc.tar.gz"
    archive.write_bytes(body)
    rc = main(["data", "fetch", "speech-commands", "--dest", str(tmp_path / "a"), "--from-archive", str(archive)])
    assert rc == 0 and (tmp_path / "a" / "no" / "s3_nohash_0.wav").is_file()
    assert archive.exists()  # the user's archive is never deleted
    capsys.readouterr()
    rc = main(["data", "fetch", "speech-commands", "--dest", str(tmp_path / "b"), "--from-archive", str(archive),
               "--sha256", "ab" * 32])
    err = capsys.readouterr().err
    assert rc == 1 and _one_error_line(err).startswith("error: checksum mismatch")
    assert not (tmp_path / "b").exists()
    rc = main(["data", "fetch", "imagenet", "--dest", str(tmp_path / "c")])
    assert rc == 1 and "unknown dataset" in capsys.readouterr().err


def test_fetch_cut_off_then_run_again_resumes(http_server, tmp_path, capsys, monkeypatch):
    body = _speech_commands_tarball(tmp_path)
    http_server.files["/sc.tar.gz"] = body
    http_server.cuts_left = 100  # the connection drops every time: the run gives up
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    dest = tmp_path / "data" / "sc"
    args = ["data", "fetch", "speech-commands", "--dest", str(dest), "--url", http_server.url + "/sc.tar.gz",
            "--sha256", hashlib.sha256(body).hexdigest()]
    assert main(args) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "run the same command again to resume" in line
    part = tmp_path / "data" / "sc.tar.gz.part"
    assert 0 < part.stat().st_size < len(body) and not dest.exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["sc.tar.gz.part"]  # no half-extracted folder
    have = part.stat().st_size
    http_server.cuts_left, http_server.requests[:] = 0, []
    assert main(args) == 0, capsys.readouterr().err
    assert http_server.requests == [("/sc.tar.gz", f"bytes={have}-")]  # continued, not restarted
    assert (dest / "yes" / "s0_nohash_0.wav").is_file()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["sc"]  # archive and .part gone


def test_extraction_reports_progress_and_tells_a_full_disk_from_a_bad_archive(tmp_path, monkeypatch):
    import errno
    import os

    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_bytes([_file(f"top/{i}.bin", os.urandom(300_000)) for i in range(4)]))
    positions = []

    class Recorder:  # stands in for the rich progress bar
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_task(self, description, total=None):
            assert total == archive.stat().st_size
            return 0

        def update(self, task, completed=None, total=None):
            positions.append(completed)

    monkeypatch.setattr(dl, "_progress_bar", Recorder)
    dl.safe_extract(archive, tmp_path / "d")
    # the bar followed the compressed stream (before, its position was never found: stuck at 0)
    assert len(positions) == 4 and positions == sorted(positions) and positions[-1] == archive.stat().st_size

    def disk_full(source, target, length=0):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(dl.shutil, "copyfileobj", disk_full)
    with pytest.raises(KwsError, match="No space left on device; nothing was extracted") as err:
        dl.safe_extract(archive, tmp_path / "e")
    assert "corrupt" not in str(err.value) and not (tmp_path / "e").exists()
