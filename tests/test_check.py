"""``tagdns check`` and ``tagdns status`` from the command line, on real sockets and files.

Each check prints one ``ok:``/``FAIL:`` line; the exit code is 0 only when all
pass, 1 when one fails, 2 for an invalid configuration (one line on stderr).
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devsupport.net import free_port
from resolver.adapters.preflight import directory_problem, port_holders, try_bind
from resolver.cli import main
from resolver.core.endpoints import Endpoint
from tests.integration.hostile_upstream import HostileUpstream, Mode
from tests.mounts import tmpfs

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "conf" / "example-mapping.json"
TAGDNS = str(Path(sys.executable).with_name("tagdns"))


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def base_args(tmp_path: Path, listen: int | None = None, metrics: int | None = None) -> list[str]:
    return [
        "--source",
        str(EXAMPLE),
        "--view",
        "us-east-1",
        "--listen",
        f"127.0.0.1:{listen or free_port()}",
        "--upstream",
        "none",
        "--cache",
        str(tmp_path / "state" / "mapping.json"),
        "--metrics",
        f"127.0.0.1:{metrics or free_port()}",
    ]


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL:")]


def test_all_checks_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = check(capsys, *base_args(tmp_path))
    assert code == 0, lines
    assert err == ""
    assert all(line.startswith("ok: ") for line in lines)
    assert lines[0] == "ok: config defaults (no file)" or lines[0].startswith("ok: config /")
    assert lines[1] == (
        f"ok: document from {EXAMPLE}: serial 1764076800 generated 2025-11-25T13:20:00Z, "
        "5 names in view us-east-1, 1 left out"
    )
    assert lines[2] == f"ok: cache {tmp_path / 'state' / 'mapping.json'}: directory writable"
    assert any(line.endswith(": free (UDP and TCP)") for line in lines)
    assert "ok: upstream: none (names not owned are refused)" in lines
    assert any(line.startswith("ok: metrics 127.0.0.1:") and "free (TCP)" in line for line in lines)
    assert not (tmp_path / "state").exists()  # check changes nothing


def _udp_only_holder() -> socket.socket:
    """A UDP socket on a port whose TCP side nothing holds (an earlier test's client
    connection may sit on the kernel's pick, which would read as TCP taken too)."""
    for _ in range(20):
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind(("127.0.0.1", 0))
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", holder.getsockname()[1]))
            except OSError:
                holder.close()
                continue
        return holder
    raise AssertionError("no UDP port with a free TCP side in 20 tries")


def test_listen_address_taken_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _udp_only_holder() as holder:
        port = holder.getsockname()[1]
        code, lines, _ = check(capsys, *base_args(tmp_path, listen=port))
    assert code == 1
    assert len(failures(lines)) == 1
    line = failures(lines)[0]
    assert line.startswith(f"FAIL: listen 127.0.0.1:{port}: UDP port in use by ")
    assert f"(pid {os.getpid()})" in line


def test_metrics_address_taken_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, lines, _ = check(capsys, *base_args(tmp_path, metrics=port))
    assert code == 1
    assert failures(lines) == [
        line
        for line in lines
        if line.startswith(f"FAIL: metrics 127.0.0.1:{port}: TCP port in use")
    ]
    assert len(failures(lines)) == 1


def test_port_zero_and_metrics_off_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = base_args(tmp_path)
    args[args.index("--listen") + 1] = "127.0.0.1:0"
    args[args.index("--metrics") + 1] = "none"
    code, lines, _ = check(capsys, *args, "--cache", "none")
    assert code == 0
    assert "ok: listen 127.0.0.1:0: any free port" in lines
    assert "ok: metrics: off (tagdns status needs them)" in lines
    assert "ok: cache: disabled (no last-known-good copy across restarts)" in lines


def test_unreachable_source_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.json"
    args = base_args(tmp_path)
    args[args.index("--source") + 1] = str(missing)
    code, lines, _ = check(capsys, *args)
    assert code == 1
    assert failures(lines) == [f"FAIL: source {missing}: {missing}: no such file"]


def test_invalid_document_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 1, "serial": "x"}')
    args = base_args(tmp_path)
    args[args.index("--source") + 1] = str(bad)
    code, lines, _ = check(capsys, *args)
    assert code == 1
    (line,) = failures(lines)
    assert line.startswith(f"FAIL: document from {bad}: ")


def test_view_auto_off_ec2_fails_but_still_parses_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    args = base_args(tmp_path)
    args[args.index("--view") + 1] = "auto"
    code, lines, _ = check(capsys, *args)
    assert code == 1
    (line,) = failures(lines)
    assert line.startswith("FAIL: view region 'auto': instance metadata did not answer")
    assert f"ok: document from {EXAMPLE}: serial 1764076800, 46 entries (view not checked)" in lines


def test_upstream_pointing_at_ourselves_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    args = base_args(tmp_path, listen=port)
    args[args.index("--upstream") + 1] = f"127.0.0.1:{port}"
    code, lines, _ = check(capsys, *args)
    assert code == 1
    assert failures(lines) == [
        f"FAIL: upstream 127.0.0.1:{port} is this agent's own listen address (a forwarding loop)"
    ]


def test_each_upstream_is_asked_one_question(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A silent, refusing or absent resolver starts the agent without complaint and then
    turns every name not owned into SERVFAIL: check asks each one, all at once."""
    closed = f"127.0.0.1:{free_port()}"
    with (
        HostileUpstream() as good,
        HostileUpstream(mode=Mode.NO_EDNS) as legacy,
        HostileUpstream(mode=Mode.REFUSED) as refusing,
        HostileUpstream(mode=Mode.SILENT) as silent,
    ):
        args = base_args(tmp_path)
        at = args.index("--upstream")
        args[at : at + 2] = [
            *("--upstream", good.address, "--upstream", legacy.address),
            *("--upstream", refusing.address, "--upstream", silent.address),
            *("--upstream", closed),
        ]
        started = time.monotonic()
        code, lines, _ = check(capsys, *args)
        took = time.monotonic() - started
    assert code == 1
    for answering in (good, legacy):  # legacy: asked again without EDNS, as the agent does
        assert any(
            line.startswith(f"ok: upstream {answering.address}: answers (")
            and line.endswith(" ms)")
            for line in lines
        ), lines
    assert [q.edns for q in legacy.queries()] == [True, False]
    assert failures(lines) == [
        f"FAIL: upstream {refusing.address}: answered REFUSED to a recursive question (. NS); "
        "names not owned would get SERVFAIL",
        f"FAIL: upstream {silent.address}: no answer in 2 s; names not owned would get SERVFAIL",
        f"FAIL: upstream {closed}: Connection refused; names not owned would get SERVFAIL",
    ]
    assert took < 4  # the 2 s waits overlap
    assert [q.name for q in good.queries()] == [""]  # the root, once


def test_cache_under_a_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = base_args(tmp_path)
    args[args.index("--cache") + 1] = str(blocker / "sub" / "mapping.json")
    code, lines, _ = check(capsys, *args)
    assert code == 1
    assert failures(lines) == [
        f"FAIL: cache {blocker / 'sub' / 'mapping.json'}: {blocker} is not a directory"
    ]


def test_cache_that_is_a_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--cache takes the copy's file name; a directory there makes every save fail."""
    directory = tmp_path / "cache"
    directory.mkdir()
    args = base_args(tmp_path)
    args[args.index("--cache") + 1] = str(directory)
    code, lines, _ = check(capsys, *args)
    assert code == 1
    assert failures(lines) == [
        f"FAIL: cache {directory}: {directory} is a directory; name the file to keep the copy "
        f"in, as {directory / 'mapping.json'}"
    ]


@pytest.fixture
def read_only_directory(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs (EROFS even for root)."""
    with tmpfs(tmp_path / "read-only", "size=1m,ro") as path:
        yield path


def test_cache_directory_not_writable_fails(
    tmp_path: Path, read_only_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = base_args(tmp_path)
    args[args.index("--cache") + 1] = str(read_only_directory / "mapping.json")
    code, lines, _ = check(capsys, *args)
    assert code == 1
    assert failures(lines) == [
        f"FAIL: cache {read_only_directory / 'mapping.json'}: {read_only_directory} is not "
        "writable: Read-only file system"
    ]


def test_missing_cache_directory_under_a_read_only_one_fails(read_only_directory: Path) -> None:
    problem = directory_problem(read_only_directory / "sub" / "mapping.json")
    assert problem == (
        f"{read_only_directory / 'sub'} does not exist and {read_only_directory} is not "
        "writable to create it"
    )


def test_missing_cache_directory_needs_a_writable_parent(tmp_path: Path) -> None:
    assert directory_problem(tmp_path / "new" / "deeper" / "mapping.json") is None
    assert directory_problem(Path("/proc/self/tagdns/mapping.json")) is not None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--listen", "localhost:53"], "'localhost' is not an IP address"),
        (["--upstream", "none", "--upstream", "auto"], "'none' must stand alone"),
        (["--view", "mars-north-9x"], "is not a region"),
        (["--config", "/nonexistent/tagdns.toml"], "/nonexistent/tagdns.toml: no such file"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (
            ["--listen", "127.0.0.1:5399", "--listen", "127.0.0.1:5399"],
            "command line: [dns] listen 127.0.0.1:5399 is listed twice",
        ),
        (
            ["--listen", "127.0.0.1:5399", "--metrics", "127.0.0.1:5399"],
            "command line: [metrics] listen 127.0.0.1:5399 is also a [dns] listen address",
        ),
    ],
    ids=[
        "listen-hostname",
        "upstream-none-mixed",
        "view",
        "config-missing",
        "unknown-flag",
        "listen-twice",
        "metrics-on-listen",
    ],
)
def test_invalid_configuration_exits_2_with_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = check(capsys, "--source", str(EXAMPLE), *argv)
    assert code == 2
    assert lines == []
    assert expected in err
    assert len(err.splitlines()) == 1


def test_metrics_allow_without_the_nodes_own_way_in_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tagdns status`` on the node would be refused: an error, as for [dns] allow."""
    config = tmp_path / "tagdns.toml"
    config.write_text('[metrics]\nlisten = "127.0.0.1:9399"\nallow = ["10.0.0.0/8"]\n')
    code, lines, err = check(capsys, "--config", str(config), *base_args(tmp_path)[:-2])
    assert (code, lines) == (2, [])
    assert err == (
        f"tagdns: {config}: [metrics] allow does not include 127.0.0.1, from which `tagdns "
        "status` on this node reaches [metrics] listen 127.0.0.1:9399; add '127.0.0.0/8' to "
        "allow\n"
    )


def test_invalid_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tagdns.toml"
    config.write_text("[dns]\nlisten = ['127.0.0.53:53']\nbogus = 1\n")
    code, lines, err = check(capsys, "--config", str(config))
    assert code == 2
    assert lines == []
    assert err.strip() == f"tagdns: {config}: unknown key 'bogus' in [dns]"


# -- the probes themselves --------------------------------------------------------------------


def test_try_bind_and_port_holders_find_this_process() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        endpoint = Endpoint("127.0.0.1", holder.getsockname()[1])
        result = try_bind(endpoint)
        holders = port_holders(endpoint, protocols=("tcp",))
    assert result["tcp"] is not None
    assert [h.pid for h in holders] == [os.getpid()]
    assert try_bind(endpoint) == {"udp": None, "tcp": None}


def test_try_bind_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as holder:
        try:
            holder.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        endpoint = Endpoint("::1", holder.getsockname()[1])
        assert try_bind(endpoint)["udp"] is not None
        assert [h.pid for h in port_holders(endpoint, protocols=("udp",))] == [os.getpid()]


# -- tagdns status, without an agent ---------------------------------------------------------


def status(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["status", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_of_a_stopped_agent_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    code, out, err = status(capsys, "--metrics", f"127.0.0.1:{port}")
    assert code == 1
    assert out == ""
    assert err == (
        f"tagdns: no agent answering at http://127.0.0.1:{port}/metrics: Connection refused\n"
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    code = 200

    def do_GET(self) -> None:
        self.send_response(self.code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[http.server.HTTPServer, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "-1"])
def test_status_of_an_agent_with_a_value_that_is_not_one_shows_unknown(
    http_server: tuple[http.server.HTTPServer, type[_Handler]],
    value: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, handler = http_server
    handler.body = (
        b'tagdns_info{source="s3://b/k",view="us-east-1",loaded_from="s3://b/k"} 1\n'
        b"tagdns_serving_serial " + value.encode() + b"\n"
        b"tagdns_names " + value.encode() + b"\n"
        b"tagdns_data_generated_timestamp_seconds " + value.encode() + b"\n"
    )
    code, out, err = status(capsys, "--metrics", f"127.0.0.1:{server.server_address[1]}")
    assert (code, err) == (1, "")  # no usable serial: not known to serve
    lines = out.splitlines()
    assert lines[1] == "  serving:    serial unknown, unknown names, view us-east-1"
    assert lines[2] == "  data:       generated unknown"
    assert lines[-1].startswith("  unusable:   tagdns_serving_serial ")


@pytest.mark.parametrize(
    ("code", "body", "expected"),
    [
        (200, b"node_load1 0.5\n", "not a tagdns agent (no tagdns_info metric)"),
        (200, b"<html>\n<body>hello</body>\n", "not Prometheus metrics"),
        (404, b"nothing here", "HTTP 404"),
    ],
    ids=["other-exporter", "html", "404"],
)
def test_status_of_something_else_is_one_line_and_exit_1(
    http_server: tuple[http.server.HTTPServer, type[_Handler]],
    code: int,
    body: bytes,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, handler = http_server
    handler.code, handler.body = code, body
    exit_code, out, err = status(capsys, "--metrics", f"127.0.0.1:{server.server_address[1]}")
    assert exit_code == 1
    assert out == ""
    assert expected in err
    assert len(err.splitlines()) == 1


class _RawEndpoint:
    """A TCP server that answers every connection with ``reply``, paced by ``pace``
    seconds a byte when set; what an endpoint that is not quite HTTP does."""

    def __init__(self, reply: bytes, pace: float = 0.0) -> None:
        self.reply, self.pace = reply, pace
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with client:
                client.recv(65536)
                try:
                    if not self.pace:
                        client.sendall(self.reply)
                        continue
                    for byte in self.reply:
                        if self.stopped.wait(self.pace):
                            return
                        client.sendall(bytes((byte,)))
                except OSError:
                    continue

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


_METRICS = b'tagdns_info{source="s3://b/k",view="us-east-1",loaded_from=""} 1\n'


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"hello world\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\n" + b"X" * 70000 + b"\r\n\r\n", "not an HTTP answer"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "not an HTTP answer",
        ),
        (
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/metrics\r\n\r\n",
            "HTTP 302 Found",
        ),
    ],
    ids=["not-http", "too-many-headers", "line-too-long", "bad-chunk", "redirect"],
)
def test_status_of_an_endpoint_that_is_not_quite_http_is_one_line(
    reply: bytes, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """These used to end in a traceback (http.client's own exceptions were not caught),
    and a redirect was followed to report another address's agent as this one."""
    endpoint = _RawEndpoint(reply)
    try:
        code, out, err = status(capsys, "--metrics", f"127.0.0.1:{endpoint.port}")
    finally:
        endpoint.close()
    assert (code, out) == (1, "")
    assert expected in err
    assert len(err.splitlines()) == 1


def test_status_gives_up_on_an_endpoint_that_trickles(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A byte every 0.2 s never trips a timeout per read: the whole scrape has one."""
    monkeypatch.setattr("resolver.cli_node.SCRAPE_TIMEOUT", 1.0)
    endpoint = _RawEndpoint(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + _METRICS, 0.2)
    started = time.monotonic()
    try:
        code, out, err = status(capsys, "--metrics", f"127.0.0.1:{endpoint.port}")
    finally:
        endpoint.close()
    assert time.monotonic() - started < 5
    assert (code, out) == (1, "")
    assert err.strip().endswith("no complete answer within 1 s")


def test_status_asks_the_node_directly_whatever_http_proxy_says(
    http_server: tuple[http.server.HTTPServer, type[_Handler]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nodes behind a corporate proxy set http_proxy for everything; the agent is on the
    node itself. Through the (here closed) proxy, status said no agent was answering."""
    server, handler = http_server
    handler.body = _METRICS
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    _code, out, err = status(capsys, "--metrics", f"127.0.0.1:{server.server_address[1]}")
    assert err == ""
    assert "view us-east-1" in out


@pytest.mark.parametrize(
    ("argv", "config", "expected"),
    [
        (["--metrics", "localhost:9153"], None, "--metrics 'localhost:9153'"),
        (["--metrics", "127.0.0.1"], None, "expected ADDR:PORT"),
        ([], '[metrics]\nlisten = "none"\n', "[metrics] listen is off"),
    ],
    ids=["hostname", "no-port", "metrics-off"],
)
def test_status_usage_errors_exit_2(
    tmp_path: Path,
    argv: list[str],
    config: str | None,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if config is not None:
        path = tmp_path / "tagdns.toml"
        path.write_text(config)
        argv = [*argv, "--config", str(path)]
    code, out, err = status(capsys, *argv)
    assert code == 2
    assert out == ""
    assert expected in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("[bogus]\n", "unknown section [bogus]"),
        ("[metrics]\nlisten = 9153\n", "[metrics] listen: expected a string"),
        ("not toml ]\n", "invalid TOML"),
    ],
    ids=["unknown-section", "wrong-type", "not-toml"],
)
def test_status_validates_the_config_even_with_metrics_given(
    tmp_path: Path, config: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tagdns.toml"
    path.write_text(config)
    port = free_port()
    code, out, err = status(capsys, "--config", str(path), "--metrics", f"127.0.0.1:{port}")
    assert code == 2
    assert out == ""
    assert err.startswith(f"tagdns: {path}: ")
    assert expected in err
    assert len(err.splitlines()) == 1


def test_status_reads_the_address_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    path = tmp_path / "tagdns.toml"
    path.write_text(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    code, _, err = status(capsys, "--config", str(path))
    assert code == 1
    assert f"http://127.0.0.1:{port}/metrics" in err


# -- [hosts] files and dnsmasq's pidfile -------------------------------------------------------


def hosts_config(tmp_path: Path, **keys: str) -> str:
    path = tmp_path / "hosts.toml"
    path.write_text("[hosts]\n" + "".join(f'{key} = "{value}"\n' for key, value in keys.items()))
    return str(path)


def test_hosts_path_in_a_missing_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent"
    config = hosts_config(tmp_path, path=str(missing / "hosts"))
    code, lines, err = check(capsys, "--config", config, *base_args(tmp_path))
    assert (code, err) == (1, "")
    assert failures(lines) == [
        f"FAIL: hosts path {missing / 'hosts'}: directory {missing} does not exist"
    ]


def test_dnsmasq_file_in_a_missing_directory_fails_under_a_writable_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Unlike cache_path, the writer creates no directory: a writable parent is no help.
    missing = tmp_path / "tagdns"
    config = hosts_config(tmp_path, dnsmasq_file=str(missing / "dnsmasq.hosts"))
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 1
    assert failures(lines) == [
        f"FAIL: hosts dnsmasq_file {missing / 'dnsmasq.hosts'}: directory {missing} does not exist"
    ]


def test_hosts_path_that_is_a_directory_or_under_a_file_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "hosts.d"
    directory.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = hosts_config(
        tmp_path, path=str(directory), dnsmasq_file=str(blocker / "sub" / "dnsmasq.hosts")
    )
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 1
    assert failures(lines) == [
        f"FAIL: hosts path {directory}: is a directory",
        f"FAIL: hosts dnsmasq_file {blocker / 'sub' / 'dnsmasq.hosts'}: "
        f"{blocker / 'sub'} is not a directory",
    ]


def test_hosts_files_in_writable_directories_pass_and_are_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    config = hosts_config(tmp_path, path=str(etc / "hosts"), dnsmasq_file=str(etc / "dm.hosts"))
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 0, lines
    assert f"ok: hosts path {etc / 'hosts'}: writable" in lines
    assert f"ok: hosts dnsmasq_file {etc / 'dm.hosts'}: writable" in lines
    assert sorted(p.name for p in etc.iterdir()) == ["hosts"]  # check changes nothing
    assert (etc / "hosts").read_text() == "127.0.0.1 localhost\n"


def test_a_hosts_file_whose_managed_block_is_damaged_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve would fail to merge on every document; check says so before it starts."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# END tagdns\n")
    config = hosts_config(tmp_path, path=str(hosts))
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 1
    [failure] = failures(lines)
    assert failure.startswith(f"FAIL: hosts path {hosts}: line 2: no '# BEGIN tagdns'"), failure
    assert hosts.read_text() == "127.0.0.1 localhost\n# END tagdns\n"  # check changes nothing


def test_hosts_directory_on_a_read_only_file_system_fails(
    tmp_path: Path, read_only_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = hosts_config(tmp_path, dnsmasq_file=str(read_only_directory / "dnsmasq.hosts"))
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 1
    assert failures(lines) == [
        f"FAIL: hosts dnsmasq_file {read_only_directory / 'dnsmasq.hosts'}: cannot write: "
        f"directory {read_only_directory} is not writable: read-only file system"
    ]


def test_dnsmasq_not_running_is_reported_but_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    config = hosts_config(
        tmp_path, dnsmasq_file=str(tmp_path / "dm.hosts"), dnsmasq_pidfile=str(pidfile)
    )
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 0, lines
    assert (
        f"ok: hosts dnsmasq_pidfile {pidfile}: dnsmasq is not running (no pidfile); "
        "it reads the hosts file when it starts"
    ) in lines


def test_dnsmasq_pidfile_naming_another_process_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    config = hosts_config(
        tmp_path, dnsmasq_file=str(tmp_path / "dm.hosts"), dnsmasq_pidfile=str(pidfile)
    )
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 1
    assert failures(lines) == [
        f"FAIL: hosts dnsmasq_pidfile {pidfile}: pid {os.getpid()} is {comm!r}, not dnsmasq: "
        "the agent would not signal it after a change (stale pidfile?)"
    ]


def test_dnsmasq_pidfile_without_a_pid_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    pidfile.write_text("not a pid\n")
    config = hosts_config(
        tmp_path, dnsmasq_file=str(tmp_path / "dm.hosts"), dnsmasq_pidfile=str(pidfile)
    )
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 1
    assert failures(lines) == [
        f"FAIL: hosts dnsmasq_pidfile {pidfile}: expected a process id, found 'not a pid\\n'"
    ]


def test_dnsmasq_pidfile_without_dnsmasq_file_exits_2_as_serve_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = hosts_config(tmp_path, dnsmasq_pidfile=str(tmp_path / "dnsmasq.pid"))
    code, lines, err = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 2
    assert lines == []
    assert err == f"tagdns: {config}: [hosts] dnsmasq_pidfile is set but dnsmasq_file is not\n"


def test_shipped_config_checks_no_hosts_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[hosts] is commented out: the shipped agent unit could not write those files."""
    _, lines, _ = check(
        capsys, "--config", str(REPO / "conf" / "tagdns.toml"), *base_args(tmp_path)
    )
    assert not [line for line in lines if " hosts " in line]


def test_shipped_hosts_keys_fail_on_their_missing_dnsmasq_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if Path("/etc/tagdns").exists():
        pytest.skip("/etc/tagdns exists on this machine")
    shipped = (REPO / "conf" / "tagdns.toml").read_text()
    config = tmp_path / "tagdns.toml"
    config.write_text(
        re.sub(r"(?m)^# (\[hosts\]|path =|dnsmasq_file =|dnsmasq_pidfile =)", r"\1", shipped)
    )
    code, lines, _ = check(capsys, "--config", str(config), *base_args(tmp_path))
    assert code == 1
    assert (
        "FAIL: hosts dnsmasq_file /etc/tagdns/dnsmasq.hosts: directory /etc/tagdns does not exist"
        in lines
    )


def test_hosts_path_and_dnsmasq_file_on_one_file_exits_2_as_serve_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent would merge its block, then write the dnsmasq file over the whole file."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    (tmp_path / "link").symlink_to(hosts)
    config = hosts_config(tmp_path, path=str(hosts), dnsmasq_file=str(tmp_path / "link"))
    code, lines, err = check(capsys, "--config", config, *base_args(tmp_path))
    assert (code, lines) == (2, [])
    assert err.startswith(
        f"tagdns: {config}: [hosts] path and [hosts] dnsmasq_file name the same file"
    )
    assert err.count("\n") == 1


def test_a_dnsmasq_file_tagdns_did_not_write_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The feeder would refuse to replace it on every document; check says so first."""
    feed = tmp_path / "dm.hosts"
    feed.write_text("127.0.0.1 localhost\n")
    config = hosts_config(tmp_path, dnsmasq_file=str(feed))
    code, lines, _ = check(capsys, "--config", config, *base_args(tmp_path))
    assert code == 1
    [failure] = failures(lines)
    assert failure.startswith(
        f"FAIL: hosts dnsmasq_file {feed}: not a dnsmasq file written by tagdns"
    ), failure
    assert feed.read_text() == "127.0.0.1 localhost\n"


# -- exit codes agree across commands ----------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "message"),
    [
        ("eu-north-1", "view region 'eu-north-1' is not among the document's regions"),
        ("auto", "view region 'auto': instance metadata did not answer"),
    ],
    ids=["region-not-in-document", "auto-without-metadata"],
)
@pytest.mark.parametrize("command", ["lookup web1", "hosts --output -", "check"])
def test_a_view_the_node_cannot_have_is_a_runtime_failure_for_every_command(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    view: str,
    message: str,
) -> None:
    """Exit 1, not 2: the flag is valid; the document (which the next publish may
    change) or instance metadata (a service that may be down) is what fails."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    argv = [*command.split(), "--source", str(EXAMPLE), "--view", view]
    if command == "check":
        argv = ["check", *base_args(tmp_path)]
        argv[argv.index("--view") + 1] = view
    assert main(argv) == 1
    captured = capsys.readouterr()
    if command == "check":
        [failure] = failures(captured.out.splitlines())
        assert message in failure
    else:
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert message in captured.err
