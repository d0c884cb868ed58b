"""Document sources and the last-known-good copy, on real files and a real HTTP endpoint.

Covers: FileSource markers (unchanged, in-place rewrite, rename, a same-sized
rewrite inside one timestamp tick, mtime put back), one-line errors; the
last-known-good round trip, its source sidecar (mismatch, missing, relabelled
safely), unwritable and unreadable cache paths, no temp files left behind; and
S3Source against a local endpoint that stalls, fails or forbids.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
import pytest

from resolver.adapters import sources
from resolver.adapters.atomic_file import write_atomically
from resolver.adapters.file_source import MAX_DOCUMENT_BYTES, read_document_file
from resolver.adapters.last_known_good import LastKnownGood
from resolver.adapters.s3_source import S3Source
from resolver.adapters.sources import FileSource
from resolver.core.source_url import FileLocation, S3Location
from resolver.errors import SourceError

DOC_A = b'{"serial": 1, "name": "aaaa"}\n'
DOC_B = b'{"serial": 2, "name": "bbbb"}\n'  # the same size as DOC_A


def file_source(path: Path) -> FileSource:
    return FileSource(FileLocation(str(path)))


def settled(path: Path) -> None:
    """Date the file's stamps back so ``stat`` alone is trusted (outside the racy window)."""
    old = os.stat(path).st_mtime_ns - 10 * sources.RACY_WINDOW_NS
    os.utime(path, ns=(old, old))


# -- FileSource -----------------------------------------------------------------------------


def test_file_source_first_fetch_then_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_bytes(DOC_A)
    settled(path)
    source = file_source(path)
    first = source.fetch(None)
    assert first is not None
    assert first.data == DOC_A
    assert source.fetch(first.marker) is None
    assert source.fetch(first.marker) is None
    assert source.bytes_downloaded == len(DOC_A)
    # No marker (SIGHUP, start): always read.
    again = source.fetch(None)
    assert again is not None
    assert again.marker == first.marker


def test_file_source_sees_in_place_rewrite_and_rename(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_bytes(DOC_A)
    source = file_source(path)
    first = source.fetch(None)
    assert first is not None

    with path.open("r+b") as handle:  # in place: same inode
        handle.write(DOC_B)
        handle.truncate()
    second = source.fetch(first.marker)
    assert second is not None
    assert second.data == DOC_B

    replacement = tmp_path / "mapping.json.new"
    replacement.write_bytes(DOC_A)
    os.replace(replacement, path)  # by rename: new inode
    third = source.fetch(second.marker)
    assert third is not None
    assert third.data == DOC_A
    assert source.bytes_downloaded == 3 * len(DOC_A)


def test_file_source_same_size_rewrite_with_the_same_stamps_is_seen(tmp_path: Path) -> None:
    """Two writes inside one clock tick give the same mtime: the content decides."""
    path = tmp_path / "mapping.json"
    path.write_bytes(DOC_A)
    stamps = os.stat(path)
    source = file_source(path)
    first = source.fetch(None)
    assert first is not None
    with path.open("r+b") as handle:
        handle.write(DOC_B)
    os.utime(path, ns=(stamps.st_atime_ns, stamps.st_mtime_ns))  # mtime as before the write
    second = source.fetch(first.marker)
    assert second is not None
    assert second.data == DOC_B
    # Read again while still recent, but the same bytes: "not modified", nothing counted.
    assert source.fetch(second.marker) is None
    assert source.bytes_downloaded == 2 * len(DOC_A)


def test_file_source_mtime_put_back_is_still_a_change(tmp_path: Path) -> None:
    """``cp -p``/``touch -r`` can restore the old mtime; the ctime still moves."""
    path = tmp_path / "mapping.json"
    path.write_bytes(DOC_A)
    settled(path)
    before = os.stat(path)
    source = file_source(path)
    first = source.fetch(None)
    assert first is not None
    with path.open("r+b") as handle:
        handle.write(DOC_B)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    second = source.fetch(first.marker)
    assert second is not None
    assert second.data == DOC_B


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (os.mkfifo, "not a regular file"),  # would block the fetch for good
        (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),  # would never end
        (lambda p: p.symlink_to(p), "Too many levels of symbolic links"),
    ],
    ids=["missing", "directory", "fifo", "device", "symlink-loop"],
)
def test_file_source_errors_are_one_line(tmp_path: Path, make: object, message: str) -> None:
    path = tmp_path / "mapping.json"
    assert callable(make)
    make(path)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        file_source(path).fetch(None)
    assert str(caught.value) == f"{path}: {message}"
    assert time.monotonic() - started < 1


def test_a_file_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Judged from its size: refused poll after poll, it must cost no memory each time."""
    path = tmp_path / "mapping.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse: no disk used

    def no_read(*_args: object, **_options: object) -> object:
        raise AssertionError("read a file larger than the limit")

    monkeypatch.setattr(os, "fdopen", no_read)
    with pytest.raises(SourceError, match=f"larger than {MAX_DOCUMENT_BYTES} bytes"):
        file_source(path).fetch(None)


# -- LastKnownGood --------------------------------------------------------------------------


def test_last_known_good_round_trip(tmp_path: Path) -> None:
    cache = LastKnownGood(tmp_path / "state" / "mapping.json", "s3://fleet/dns/mapping.json")
    assert cache.load() is None  # nothing yet, not an error
    cache.save(DOC_A)
    assert cache.load() == DOC_A
    assert (tmp_path / "state" / "mapping.json").read_bytes() == DOC_A  # the bytes, exactly
    assert cache.sidecar.read_text() == "s3://fleet/dns/mapping.json\n"
    cache.save(DOC_B)
    assert cache.load() == DOC_B
    assert sorted(os.listdir(tmp_path / "state")) == ["mapping.json", "mapping.json.source"]


def test_cache_of_another_source_is_refused_then_relabelled(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    LastKnownGood(path, "s3://old/mapping.json").save(DOC_A)
    cache = LastKnownGood(path, "s3://new/mapping.json")
    with pytest.raises(SourceError) as caught:
        cache.load()
    assert str(caught.value) == (
        f"cache {path}: made for source 's3://old/mapping.json', not 's3://new/mapping.json'"
    )
    cache.save(DOC_B)
    assert cache.load() == DOC_B
    with pytest.raises(SourceError):
        LastKnownGood(path, "s3://old/mapping.json").load()


def test_cache_without_sidecar_is_not_served(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_bytes(DOC_A)
    with pytest.raises(SourceError) as caught:
        LastKnownGood(path, "/srv/mapping.json").load()
    assert str(caught.value) == f"cache {path}: cannot read mapping.json.source"


def test_relabelling_never_leaves_old_data_under_the_new_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the writes leaves a copy that is refused, not mislabelled."""
    path = tmp_path / "mapping.json"
    LastKnownGood(path, "s3://old/mapping.json").save(DOC_A)

    written: list[Path] = []

    def crash_after_data(target: Path, data: bytes) -> None:
        if written:
            raise OSError(28, "No space left on device")
        written.append(target)
        write_atomically(target, data)

    monkeypatch.setattr("resolver.adapters.last_known_good.write_atomically", crash_after_data)
    with pytest.raises(SourceError, match="No space left on device"):
        LastKnownGood(path, "s3://new/mapping.json").save(DOC_B)
    assert written == [path]
    monkeypatch.undo()
    for label in ("s3://old/mapping.json", "s3://new/mapping.json"):
        with pytest.raises(SourceError, match=r"cannot read mapping\.json\.source"):
            LastKnownGood(path, label).load()


def test_unwritable_cache_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    cache = LastKnownGood(blocker / "mapping.json", "/srv/mapping.json")
    with pytest.raises(SourceError) as caught:
        cache.save(DOC_A)
    assert str(caught.value).startswith(f"cache {blocker / 'mapping.json'}: cannot write: ")
    assert "\n" not in str(caught.value)
    assert cache.load() is None


def test_unreadable_cache_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    cache = LastKnownGood(path, "/srv/mapping.json")
    cache.save(DOC_A)
    path.unlink()
    path.mkdir()  # something unreadable as a file, whatever the uid
    with pytest.raises(SourceError) as caught:
        cache.load()
    assert str(caught.value) == f"cache {path}: is a directory"


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "mapping.json"
    for content in (DOC_A, DOC_B, b""):
        write_atomically(target, content)
        assert target.read_bytes() == content
        assert os.listdir(tmp_path) == ["mapping.json"]
    # A rename that fails (the target is a non-empty directory) removes its temp file too.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        write_atomically(blocked, DOC_A)
    assert sorted(os.listdir(tmp_path)) == ["blocked", "mapping.json"]


# -- S3Source against a local endpoint ------------------------------------------------------


class _Endpoint(http.server.BaseHTTPRequestHandler):
    mode = "stall"

    def do_GET(self) -> None:
        if self.mode == "stall":
            self.server.release.wait(10)  # type: ignore[attr-defined]
            return
        status, code = {"500": (500, "InternalError"), "403": (403, "AccessDenied")}[self.mode]
        body = f"<Error><Code>{code}</Code><Message>no</Message></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    server.release = threading.Event()  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


def s3_source(server: http.server.ThreadingHTTPServer) -> S3Source:
    host, port = server.server_address[:2]
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host!s}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(
            read_timeout=0.5, connect_timeout=0.5, retries={"total_max_attempts": 1}
        ),
    )
    return S3Source(S3Location("fleet-config", "dns/mapping.json"), client)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("stall", "s3://fleet-config/dns/mapping.json: timed out talking to http://127.0.0.1:"),
        ("500", "s3://fleet-config/dns/mapping.json: InternalError: no"),
        (
            "403",
            "s3://fleet-config/dns/mapping.json: access denied (check the node's IAM policy: "
            "s3:GetObject on this key)",
        ),
    ],
)
def test_s3_source_failures_are_one_line(
    endpoint: http.server.ThreadingHTTPServer, mode: str, message: str
) -> None:
    _Endpoint.mode = mode
    source = s3_source(endpoint)
    with pytest.raises(SourceError) as caught:
        source.fetch('"etag"')
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert source.bytes_downloaded == 0


def test_s3_source_connection_refused_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    source = S3Source(S3Location("fleet-config", "mapping.json"), client)
    with pytest.raises(SourceError) as caught:
        source.fetch(None)
    assert str(caught.value) == (
        f"s3://fleet-config/mapping.json: cannot connect to "
        f"http://127.0.0.1:{port}/fleet-config/mapping.json"
    )


def test_a_one_shot_read_takes_a_pipe_to_its_end() -> None:
    """``tagdns lookup --source /dev/stdin`` or ``<(...)``: a pipe, read to its end even
    when its writer is slow; the agent's polling reads (pipes=False) refuse it."""
    read_end, write_end = os.pipe()

    def write() -> None:
        time.sleep(0.2)
        os.write(write_end, DOC_A)
        os.close(write_end)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert read_document_file(f"/dev/fd/{read_end}", pipes=True) == DOC_A
        with pytest.raises(SourceError, match="not a regular file"):
            read_document_file(f"/dev/fd/{read_end}")
    finally:
        writer.join(5)
        os.close(read_end)


def test_a_pipe_nobody_writes_to_is_an_empty_source_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "mapping.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(SourceError, match="empty: nothing was written to the pipe"):
        read_document_file(str(fifo), pipes=True)
    assert time.monotonic() - started < 1
