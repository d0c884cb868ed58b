"""Metrics, readiness and logging of an agent running in this process.

The agent is real: a file source on disk, its DNS server and its metrics endpoint
on loopback ports, its event loop in a thread. Metrics are scraped over HTTP and
parsed with prometheus_client's parser; readiness goes to a real AF_UNIX datagram
socket, as systemd's would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dnslib import DNSRecord

from resolver.adapters.logging_setup import (
    JsonFormatter,
    TextFormatter,
    held_lines,
    setup_logging,
)
from resolver.adapters.systemd_notify import SystemdNotifier, socket_address
from resolver.agent import Agent, AgentPlan
from resolver.cli import main
from resolver.cli_node import scrape
from resolver.core.endpoints import Endpoint
from resolver.core.pipeline import ZoneSettings
from resolver.core.responder import Responder
from resolver.core.source_url import FileLocation
from tests.core.dns_helpers import broken_zone
from tests.integration.hostile_upstream import HostileUpstream
from tests.log_streams import CountingStream

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "conf" / "example-mapping.json"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
T = TypeVar("T")
ANY_PORT = Endpoint("127.0.0.1", 0)


class RunningAgent:
    """An Agent started on its own event loop in a daemon thread (no signal handlers)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> RunningAgent:
        self.thread.start()
        self.port = self.call(self.agent.start())[0].port
        return self

    def __exit__(self, *_: object) -> None:
        try:
            if self.agent.server is not None:
                self.call(self.agent.server.close())
            if self.agent.metrics is not None:
                self.call(self.agent.metrics.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()

    @property
    def metrics_url(self) -> str:
        assert self.agent.metrics is not None
        return self.agent.metrics.url

    @property
    def metrics_endpoint(self) -> Endpoint:
        assert self.agent.metrics is not None
        assert self.agent.metrics.endpoint is not None
        return self.agent.metrics.endpoint

    def ask(self, name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
        query = DNSRecord.question(name, qtype)
        if tcp:
            reply = query.send("127.0.0.1", self.port, tcp=True, timeout=3)
        else:
            reply = query.send("127.0.0.1", self.port, timeout=3)
        return DNSRecord.parse(reply)

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        return {
            name: [(dict(labels), number) for labels, number in values]
            for name, values in scrape(self.metrics_endpoint).items()
        }


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    for sample_labels, number in samples.get(name, []):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return number
    raise AssertionError(f"no sample {name} {labels} in {sorted(samples)}")


def plan(
    source: Path,
    *,
    metrics: Endpoint | None = ANY_PORT,
    upstreams: tuple[Endpoint, ...] = (),
) -> AgentPlan:
    return AgentPlan(
        source=FileLocation(str(source)),
        settings=ZoneSettings(view="us-east-1", forwarding=bool(upstreams)),
        listen=(Endpoint("127.0.0.1", 0),),
        allow=LOOPBACK,
        upstreams=upstreams,
        watch=False,
        metrics=metrics,
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.json"
    path.write_bytes(EXAMPLE.read_bytes())
    return path


def bumped(source: Path, serial_delta: int = 1) -> None:
    document = json.loads(source.read_text())
    document["serial"] += serial_delta
    source.write_text(json.dumps(document))


# -- metrics --------------------------------------------------------------------------------


def test_metrics_show_serial_source_and_query_counters(source: Path) -> None:
    with RunningAgent(Agent(plan(source))) as running:
        assert running.ask("web1.internal").short() == "10.0.1.10"
        running.ask("web1", "AAAA")
        running.ask("web1", "MX")  # NODATA: owned
        running.ask("api", "A", tcp=True)
        running.ask("elsewhere.example")  # not owned, no upstream: REFUSED
        samples = running.samples()

    assert value(samples, "tagdns_serving_serial") == 1764076800
    assert value(samples, "tagdns_names") == 5
    info = samples["tagdns_info"][0][0]
    assert info == {"source": str(source), "view": "us-east-1", "loaded_from": str(source)}
    assert value(samples, "tagdns_source_healthy") == 1
    assert value(samples, "tagdns_data_generated_timestamp_seconds") == 1764076800.0
    assert value(samples, "tagdns_data_age_seconds") > 0
    assert value(samples, "tagdns_last_fetch_success_timestamp_seconds") > 1764076800
    assert value(samples, "tagdns_reloads_total", result="accepted") == 1
    assert value(samples, "tagdns_rebuilds_total") == 0  # the first load is a full one
    assert 0 < value(samples, "tagdns_last_load_seconds") < 60
    assert value(samples, "tagdns_queries_total", transport="udp") == 4
    assert value(samples, "tagdns_queries_total", transport="tcp") == 1
    assert 1 <= value(samples, "tagdns_udp_batches_total") <= 4  # one query at a time here
    assert value(samples, "tagdns_query_types_total", type="A") == 3
    assert value(samples, "tagdns_query_types_total", type="AAAA") == 1
    assert value(samples, "tagdns_query_types_total", type="MX") == 1
    assert value(samples, "tagdns_responses_total", rcode="NOERROR") == 4
    assert value(samples, "tagdns_responses_total", rcode="REFUSED") == 1
    assert value(samples, "tagdns_answers_total", source="owned") == 4
    assert value(samples, "tagdns_answers_total", source="forwarded") == 0
    assert "tagdns_upstream_errors_total" not in samples  # forwarding is off
    assert value(samples, "process_resident_memory_bytes") > 0


def test_metrics_count_upstream_failures_and_forwarded_answers(source: Path) -> None:
    # The upstream is another agent without forwarding: it REFUSES names it does not own.
    with RunningAgent(Agent(plan(source, metrics=None))) as upstream_agent:
        refusing = Endpoint("127.0.0.1", upstream_agent.port)
        with RunningAgent(Agent(plan(source, upstreams=(refusing,)))) as running:
            reply = running.ask("elsewhere.example")
            samples = running.samples()
            forwarder = running.agent.forwarder
            assert forwarder is not None
            forwarder.ranking.timed_out(refusing, 0.0)  # as a silent upstream would be
            forwarder.ranking.timed_out(refusing, 5.0)
            silent = running.samples()
    assert value(samples, "tagdns_upstream_timeouts_in_a_row", upstream=str(refusing)) == 0
    assert value(samples, "tagdns_metrics_refused_total") == 0
    assert value(samples, "tagdns_metrics_evicted_total") == 0
    assert value(silent, "tagdns_upstream_timeouts_in_a_row", upstream=str(refusing)) == 2
    assert reply.header.rcode == 2  # SERVFAIL: the only upstream refused
    assert value(samples, "tagdns_upstream_errors_total", upstream=str(refusing)) == 1
    assert value(samples, "tagdns_upstream_queries_total") == 1
    assert value(samples, "tagdns_forward_servfail_total") == 1
    # The SERVFAIL is the agent's own, not an answer from upstream.
    assert value(samples, "tagdns_answers_total", source="forwarded") == 0
    assert value(samples, "tagdns_answers_total", source="owned") == 0
    assert value(samples, "tagdns_responses_total", rcode="SERVFAIL") == 1


def test_every_metric_the_agent_serves_is_in_the_docs_table(source: Path) -> None:
    """docs/node-setup.md is where an operator looks a metric up: one added to the
    agent and not to its table fails here."""
    text = (REPO / "docs" / "node-setup.md").read_text()
    documented = set(re.findall(r"\btagdns_[a-z_]*[a-z]", text))
    prefixes = tuple(name + "_" for name in re.findall(r"\b(tagdns_[a-z_]*[a-z])_\*", text))
    with RunningAgent(Agent(plan(source, metrics=None))) as upstream_agent:
        refusing = Endpoint("127.0.0.1", upstream_agent.port)
        with RunningAgent(Agent(plan(source, upstreams=(refusing,)))) as running:
            running.ask("elsewhere.example")
            served = {name for name in running.samples() if name.startswith("tagdns_")}
    assert len(served) > 40
    undocumented = {n for n in served if n not in documented and not n.startswith(prefixes)}
    assert undocumented == set()


def test_metrics_count_an_internal_error_in_the_responder(source: Path) -> None:
    """The error policy turns a bug into SERVFAIL inside the responder; the counter an
    operator alerts on must see it, not only errors that reach the server."""
    with RunningAgent(Agent(plan(source))) as running:
        server = running.agent.server
        assert server is not None
        zone = server.responder.zone
        server.responder = Responder(broken_zone(zone), forwarding=False, stats=running.agent.stats)
        reply = running.ask("web1")
        samples = running.samples()
    assert reply.header.rcode == 2  # SERVFAIL
    assert value(samples, "tagdns_internal_errors_total") == 1


def test_metrics_count_cname_chains_completed_from_the_view(source: Path) -> None:
    with HostileUpstream() as upstream:
        upstream.add("alias.example.test", "CNAME", "web1.internal")
        upstream.add("plain.example.test", "A", "192.0.2.1")
        endpoint = Endpoint("127.0.0.1", upstream.port)
        with RunningAgent(Agent(plan(source, upstreams=(endpoint,)))) as running:
            completed = running.ask("alias.example.test")
            plain = running.ask("plain.example.test")
            samples = running.samples()
    assert [str(rr.rdata) for rr in completed.rr] == ["web1.internal.", "10.0.1.10"]
    assert [str(rr.rdata) for rr in plain.rr] == ["192.0.2.1"]
    assert value(samples, "tagdns_forward_completed_total") == 1
    assert value(samples, "tagdns_answers_total", source="forwarded") == 2


def test_metrics_show_a_refused_document_and_the_error_kept(source: Path) -> None:
    with RunningAgent(Agent(plan(source))) as running:
        bumped(source, -5)  # an older serial: refused, serial 1764076800 kept
        running.call(running.agent.refresh())
        samples = running.samples()
    assert value(samples, "tagdns_serving_serial") == 1764076800
    assert value(samples, "tagdns_reloads_total", result="rejected") == 1
    assert value(samples, "tagdns_source_healthy") == 0
    error = samples["tagdns_last_error_info"][0][0]["error"]
    assert "refused" in error
    assert str(source) in error


def test_metrics_show_a_file_the_node_could_not_write(source: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_bytes(b"a file where the cache directory should be")
    with RunningAgent(
        Agent(dataclasses.replace(plan(source), cache_path=blocker / "m.json"))
    ) as running:
        samples = running.samples()
    assert value(samples, "tagdns_files_healthy") == 0
    assert value(samples, "tagdns_source_healthy") == 1  # DNS and the source are fine
    error = samples["tagdns_files_error_info"][0][0]["error"]
    assert error.startswith("last-known-good copy not saved: cache ")


def test_metrics_port_taken_keeps_dns_serving(
    source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = Endpoint("127.0.0.1", holder.getsockname()[1])
        with (
            caplog.at_level(logging.WARNING),
            RunningAgent(Agent(plan(source, metrics=taken))) as r,
        ):
            assert r.agent.metrics is None
            assert r.ask("web1").short() == "10.0.1.10"
    assert any(f"no metrics: cannot listen on {taken}" in m for m in caplog.messages)


def test_no_metrics_when_not_asked(source: Path) -> None:
    with RunningAgent(Agent(plan(source, metrics=None))) as running:
        assert running.agent.metrics is None
        assert running.ask("web1").short() == "10.0.1.10"


# -- tagdns status against it ----------------------------------------------------------------


def test_status_summarises_a_running_agent(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RunningAgent(Agent(plan(source))) as running:
        running.ask("web1")
        assert running.agent.metrics is not None
        code = main(["status", "--metrics", str(running.agent.metrics.endpoint)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == f"tagdns agent at {running.agent.metrics.endpoint}"
    assert out[1] == "  serving:    serial 1764076800, 5 names, view us-east-1"
    assert out[2].startswith("  data:       generated 2025-11-25 13:20:00 UTC, ")
    assert f"  source:     {source} (data from {source})" in out
    assert "  last error: none" in out
    assert "  queries:    1 (UDP 1, TCP 0): owned 1, cached 0, forwarded 0" in out
    assert "  replies:    NOERROR 1" in out
    assert "  upstream:   none (names not owned are refused)" in out


def test_status_of_an_agent_without_data_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "not-yet.json"
    with RunningAgent(Agent(plan(missing))) as running:
        assert running.agent.metrics is not None
        code = main(["status", "--metrics", str(running.agent.metrics.endpoint)])
        samples = running.samples()
    out = capsys.readouterr().out
    assert code == 1
    assert "serving:    nothing yet" in out
    # As documented: absent before the first document, rather than a serial-less 0 names.
    assert "tagdns_serving_serial" not in samples and "tagdns_names" not in samples
    assert f"last error: {missing}: no such file" in out


# -- readiness -------------------------------------------------------------------------------


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def receive(self) -> dict[str, str]:
        message = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in message.split("\n"))

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(5)
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[NotifySocket, str]]:
    path = str(tmp_path / "notify")
    listener = NotifySocket(path)
    try:
        yield listener, path
    finally:
        listener.close()


def test_ready_once_listening_with_a_zone_then_status_and_stopping(
    source: Path, notify_socket: tuple[NotifySocket, str]
) -> None:
    listener, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    agent = Agent(plan(source, metrics=None), notifier=notifier)
    with RunningAgent(agent) as running:
        assert listener.receive() == {"STATUS": "listening, no mapping yet: fetching"}
        ready = listener.receive()
        assert ready == {
            "READY": "1",
            "STATUS": "serving serial 1764076800 (5 names, view us-east-1)",
        }
        bumped(source)
        running.call(agent.refresh())
        assert listener.receive() == {
            "STATUS": "serving serial 1764076801 (5 names, view us-east-1)"
        }
        bumped(source, -10)
        running.call(agent.refresh())
        status = listener.receive()["STATUS"]
        assert status.startswith(
            "serving serial 1764076801 (5 names, view us-east-1); keeping it: "
        )
        assert "refused" in status
        notifier.stopping()
        assert listener.receive() == {"STOPPING": "1", "STATUS": "stopping"}


def test_not_ready_until_the_first_document_arrives(
    tmp_path: Path, notify_socket: tuple[NotifySocket, str]
) -> None:
    listener, path = notify_socket
    source = tmp_path / "later.json"
    agent = Agent(plan(source, metrics=None), notifier=SystemdNotifier({"NOTIFY_SOCKET": path}))
    with RunningAgent(agent) as running:
        assert listener.receive() == {"STATUS": "listening, no mapping yet: fetching"}
        failed = listener.receive()
        assert failed == {"STATUS": f"listening, no mapping yet: {source}: no such file"}
        assert not listener.pending()
        source.write_bytes(EXAMPLE.read_bytes())
        running.call(agent.refresh())
        assert listener.receive()["READY"] == "1"


def test_abstract_notify_socket(source: Path) -> None:
    name = f"tagdns-test-{os.getpid()}-{threading.get_ident()}"
    listener = NotifySocket("\0" + name)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("serving serial 7")
        assert listener.receive() == {"READY": "1", "STATUS": "serving serial 7"}
        assert notifier.status("line one\nline two")  # one field stays one line
        assert listener.receive() == {"STATUS": "line one line two"}
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("value", "address"),
    [("/run/systemd/notify", "/run/systemd/notify"), ("@abc", "\0abc"), ("@", None), ("rel", None)],
)
def test_notify_socket_addresses(value: str, address: str | None) -> None:
    assert socket_address(value) == address


def test_notify_outside_systemd_and_with_bad_sockets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not SystemdNotifier({}).enabled
    assert not SystemdNotifier({}).ready("x")
    with caplog.at_level(logging.WARNING):
        relative = SystemdNotifier({"NOTIFY_SOCKET": "relative/path"})
        assert not relative.enabled
        gone = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
        assert gone.enabled
        assert not gone.ready("x")
        assert not gone.status("y")  # warned once, not twice
    warnings = [r.getMessage() for r in caplog.records if r.name == "tagdns.systemd"]
    assert len(warnings) == 2
    assert "relative/path" in warnings[0]


# -- query logging ---------------------------------------------------------------------------


def test_query_logging_is_off_by_default_and_toggles(
    source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tagdns.query")
    with RunningAgent(Agent(plan(source, metrics=None))) as running:
        running.ask("web1")
        assert not [r for r in caplog.records if r.name == "tagdns.query"]
        running.agent.set_query_logging(True)
        running.ask("web1.internal", "AAAA")
        running.ask("api", tcp=True)
        running.ask("nowhere.example")
        running.agent._toggle_query_logging()
        running.ask("web2")
    lines = [r.getMessage() for r in caplog.records if r.name == "tagdns.query"]
    assert len(lines) == 3
    assert lines[0].startswith("query 127.0.0.1:")
    assert lines[0].endswith(" udp web1.internal. AAAA NOERROR")
    assert lines[1].endswith(" tcp api. A NOERROR")
    assert lines[2].endswith(" udp nowhere.example. A REFUSED")
    record = next(r for r in caplog.records if r.name == "tagdns.query")
    assert record.fields["name"] == "web1.internal."  # type: ignore[attr-defined]


# -- log formats -----------------------------------------------------------------------------


def _record(
    message: str, *args: object, level: int = logging.INFO, **extra: Any
) -> logging.LogRecord:
    record = logging.LogRecord("tagdns.agent", level, __file__, 1, message, args, None)
    for key, item in extra.items():
        setattr(record, key, item)
    return record


def test_text_format_is_one_line_per_event() -> None:
    formatter = TextFormatter()
    line = formatter.format(_record("refused: %r", "web$(reboot)\nEVIL 1"))
    assert "\n" not in line
    assert line.endswith("INFO tagdns.agent: refused: 'web$(reboot)\\nEVIL 1'")
    forged = formatter.format(_record("%s", "one\ntwo\r\nthree\u2028four"))
    assert forged.endswith("tagdns.agent: one | two | three | four")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record = _record("internal error", level=logging.ERROR)
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "\n" not in line
    assert "ERROR tagdns.agent: internal error | Traceback (most recent call last):" in line
    assert line.endswith("ValueError: boom | second line")


def test_text_format_stamps_each_record_with_its_own_time() -> None:
    """The stamp is kept per second: a record in another second gets its own."""
    formatter = TextFormatter()
    start = time.mktime((2026, 11, 26, 9, 59, 59, 0, 0, -1))
    stamps = []
    for created in (start + 0.25, start + 0.75, start + 1.5, start + 0.5):
        record = _record("tick")
        record.created, record.msecs = created, (created % 1) * 1000
        stamps.append(formatter.format(record).split(" INFO ")[0])
    assert stamps == [
        "2026-11-26 09:59:59,250",
        "2026-11-26 09:59:59,750",
        "2026-11-26 10:00:00,500",
        "2026-11-26 09:59:59,500",
    ]


def test_json_format_is_one_object_per_line_with_fields() -> None:
    line = JsonFormatter().format(
        _record("query %s", "x", fields={"client": "127.0.0.1:5", "rcode": "NOERROR"})
    )
    assert "\n" not in line
    event = json.loads(line)
    assert event["level"] == "info"
    assert event["logger"] == "tagdns.agent"
    assert event["message"] == "query x"
    assert event["client"] == "127.0.0.1:5"
    assert event["time"].endswith("Z")
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        import sys

        record = _record("oops", level=logging.ERROR)
        record.exc_info = sys.exc_info()
    event = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: bad" in event["exception"]


@pytest.mark.usefixtures("restore_root_logging")
def test_setup_logging_json_and_levels() -> None:
    stream = io.StringIO()
    setup_logging("warning", "json", stream=stream, environ={})
    logging.getLogger("tagdns.agent").info("hidden")
    logging.getLogger("tagdns.agent").warning("shown %d", 1)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["shown 1"]


@pytest.mark.usefixtures("restore_root_logging")
def test_setup_logging_under_journald_uses_priorities(tmp_path: Path) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        stat = os.fstat(stream.fileno())
        setup_logging(
            "info",
            "text",
            stream=stream,
            environ={"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"},
        )
        logging.getLogger("tagdns.agent").error("bad %s", "thing")
        logging.getLogger("tagdns.agent").info("fine")
        stream.flush()
        stream.seek(0)
        assert stream.read().splitlines() == [
            "<3>ERROR tagdns.agent: bad thing",
            "<6>INFO tagdns.agent: fine",
        ]


@pytest.mark.usefixtures("restore_root_logging")
def test_setup_logging_ignores_a_journal_stream_that_is_not_ours(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream=stream, environ={"JOURNAL_STREAM": "1:2"})
    logging.getLogger("tagdns.agent").info("plain")
    assert not stream.getvalue().startswith("<")
    setup_logging("info", "text", stream=stream, environ={"JOURNAL_STREAM": "garbage"})


@pytest.mark.usefixtures("restore_root_logging")
def test_held_lines_are_written_once_in_order_and_not_before() -> None:
    stream = CountingStream()
    setup_logging("info", "text", stream=stream, environ={})
    log = logging.getLogger("tagdns.agent")
    log.info("before")
    with held_lines():
        for n in range(50):
            log.info("held %d", n)
        other = threading.Thread(target=log.warning, args=("from another thread",))
        other.start()
        other.join()
        with held_lines():  # nested: written when the outermost one ends
            log.info("nested")
        assert stream.getvalue().count("\n") == 1 and stream.writes == 1
    messages = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]
    assert messages == [
        "before",
        *(f"held {n}" for n in range(50)),
        "from another thread",
        "nested",
    ]
    assert stream.writes == 2
    log.info("after")
    assert stream.writes == 3


@pytest.mark.usefixtures("restore_root_logging")
def test_held_lines_without_our_handler_change_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tagdns.query"), held_lines():
        logging.getLogger("tagdns.query").info("seen at once")
        assert [r.getMessage() for r in caplog.records] == ["seen at once"]


@pytest.mark.usefixtures("restore_root_logging")
def test_held_lines_on_a_closed_stream_are_dropped_quietly() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream=stream, environ={})
    with held_lines():
        logging.getLogger("tagdns.query").info("nowhere to go")
        stream.close()
    # No exception left the block: a broken stderr must not break the UDP batch.


# -- serve's flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--log-format", "xml"], "--log-format: invalid choice: 'xml'"),
        (["--log-level", "loud"], "--log-level: invalid choice: 'loud'"),
        (["--metrics", "localhost:9153"], "[metrics] listen 'localhost:9153'"),
        (["--metrics", "127.0.0.1:99999"], "port must be 0 to 65535"),
    ],
    ids=["log-format", "log-level", "metrics-hostname", "metrics-port"],
)
def test_serve_rejects_bad_logging_and_metrics_flags(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--source", str(EXAMPLE), "--view", "us-east-1", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert len(err.splitlines()) == 1


def test_metrics_endpoint_serves_text_over_plain_http(source: Path) -> None:
    with (
        RunningAgent(Agent(plan(source))) as running,
        urllib.request.urlopen(running.metrics_url, timeout=5) as reply,
    ):
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        assert b"tagdns_serving_serial 1.7640768e+09" in reply.read()
