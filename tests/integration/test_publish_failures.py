"""Failures of ``tagdns publish``: one line on stderr, the right exit code, nothing written."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from devsupport.net import free_port
from resolver.adapters.ec2_scan import scan_regions
from resolver.cli import main
from resolver.core.document import parse_document
from resolver.errors import AwsError
from tests.integration.conftest import Fleet, MotoServer, object_versions, read_object
from tests.integration.test_live_mapping import S3Proxy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

TAGDNS = Path(sys.executable).with_name("tagdns")
BUCKET = "fleet-config"
MAPPING = "dns/mapping.json"
HOSTS = ("dns/hosts/us-east-1.hosts", "dns/hosts/public.hosts")
_SERIAL_LINE = re.compile(r"^# view \S+, zone \S+, serial (\d+)$", re.MULTILINE)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["publish", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err: str) -> None:
    assert err.startswith("tagdns: ")
    assert err.count("\n") == 1
    assert err.endswith("\n")
    assert "Traceback" not in err


def test_console_script_publishes(
    fleet: Fleet, s3: S3Client, bucket: str, aws_env: dict[str, str]
) -> None:
    fleet.launch("eu-west-1", "web1,api", count=2)

    done = subprocess.run(
        [str(TAGDNS), "publish", "--bucket", BUCKET, "--regions", "eu-west-1"],
        env=aws_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert "2 named instances, 2 names, 1 regions, 0 rejected tag values" in done.stdout
    assert f"wrote s3://{BUCKET}/dns/mapping.json" in done.stdout
    assert set(object_versions(s3, bucket)) == {
        "dns/mapping.json",
        "dns/hosts/eu-west-1.hosts",
        "dns/hosts/public.hosts",
    }


def test_no_credentials_is_one_line_from_the_console_script(
    fleet: Fleet, s3: S3Client, bucket: str, aws_env: dict[str, str]
) -> None:
    fleet.launch("us-east-1", "web1")
    env = {
        k: v for k, v in aws_env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }

    done = subprocess.run(
        [str(TAGDNS), "publish", "--bucket", BUCKET, "--regions", "us-east-1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert_one_line(done.stderr)
    # Word for word as docs/publishing.md shows it.
    assert done.stderr == (
        f"tagdns: cannot read s3://{BUCKET}/dns/mapping.json: "
        "no AWS credentials found (environment, AWS_PROFILE, config files or role)\n"
    )
    assert done.stdout == ""
    assert object_versions(s3, bucket) == {}


def test_missing_bucket(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.launch("us-east-1", "web1")

    code, out, err = run(capsys, "--bucket", "no-such-bucket", "--regions", "us-east-1")

    assert (code, out) == (1, "")
    assert err == "tagdns: bucket 'no-such-bucket' does not exist\n"


def test_unreachable_endpoint_fails_fast_with_one_line(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    started = time.monotonic()

    code, out, err = run(capsys, "--bucket", BUCKET, "--regions", "us-east-1")

    assert (code, out) == (1, "")
    assert_one_line(err)
    assert f"cannot connect to {closed}" in err
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ("us-east-1,xx-fake-9", "tagdns: regions: 'xx-fake-9' is not an EC2 region\n"),
        ("ap-east-1", "tagdns: regions: 'ap-east-1' is not enabled for this account\n"),
        ("useast1", "tagdns: --regions: 'useast1' is not a region name\n"),
        ("all,us-east-1", "tagdns: --regions: 'all' cannot be combined with named regions\n"),
    ],
)
def test_bad_region_is_a_usage_error(
    fleet: Fleet,
    s3: S3Client,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    regions: str,
    message: str,
) -> None:
    fleet.launch("us-east-1", "web1")

    code, out, err = run(capsys, "--bucket", BUCKET, "--regions", regions)

    assert (code, out, err) == (2, "", message)
    assert object_versions(s3, bucket) == {}


def test_a_failing_region_fails_the_whole_scan(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto answers a made-up region with an HTML 500 page: a region that cannot be
    # read must be an error naming it, never an empty region.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    fleet.launch("us-east-1", "web1")

    with pytest.raises(AwsError) as raised:
        scan_regions(boto3.Session(), ["us-east-1", "xx-fake-1"], "dns")

    message = str(raised.value)
    assert message.startswith("EC2 DescribeInstances in xx-fake-1 failed: ")
    assert "\n" not in message


def test_scan_concurrency_and_page_size_do_not_change_the_result(fleet: Fleet) -> None:
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
        for i in range(6):
            fleet.launch(region, f"{region}-n{i}", count=2)
    regions = ["ap-southeast-2", "eu-west-1", "us-east-1"]
    session = boto3.Session()

    concurrent = scan_regions(session, regions, "dns", page_size=5)
    serial = scan_regions(session, regions, "dns", max_workers=1)

    # 6 reservations at 5 a page: two pages, the second holding the last reservation.
    assert [scan.pages for scan in concurrent] == [2, 2, 2]
    assert [scan.pages for scan in serial] == [1, 1, 1]
    assert [scan.region for scan in concurrent] == regions
    for fast, slow in zip(concurrent, serial, strict=True):
        assert len(fast.instances) == 12
        assert sorted(fast.instances, key=lambda i: i.instance_id) == sorted(
            slow.instances, key=lambda i: i.instance_id
        )
    assert {i.tag_value for i in concurrent[2].instances} == {f"us-east-1-n{i}" for i in range(6)}


class PutRefusingProxy(S3Proxy):
    """The suite's S3 proxy, answering 403 AccessDenied to PUTs whose key ends in ``refuse``."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.refuse: str | None = None

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        key = urllib.parse.urlsplit(request.path).path
        if request.command == "PUT" and self.refuse is not None and key.endswith(self.refuse):
            request.rfile.read(int(request.headers.get("Content-Length") or 0))
            payload = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            self._send(request, 403, [("Content-Type", "application/xml")], payload)
            return
        super().handle(request)


@pytest.fixture
def refusing_proxy(aws: MotoServer) -> Iterator[PutRefusingProxy]:
    server = PutRefusingProxy(aws.url)
    try:
        yield server
    finally:
        server.close()


def hosts_serial(s3: S3Client, bucket: str, key: str) -> int:
    match = _SERIAL_LINE.search(read_object(s3, bucket, key).decode())
    assert match is not None
    return int(match.group(1))


def test_a_put_failing_after_the_hosts_files_says_what_was_written_and_is_repaired(
    fleet: Fleet,
    s3: S3Client,
    bucket: str,
    refusing_proxy: PutRefusingProxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet.launch("us-east-1", "web1")
    assert run(capsys, "--bucket", BUCKET, "--regions", "us-east-1")[0] == 0
    old_serial = parse_document(read_object(s3, bucket, MAPPING)).serial
    added = fleet.launch("us-east-1", "api")
    refusing_proxy.refuse = "/mapping.json"
    monkeypatch.setenv("AWS_ENDPOINT_URL", refusing_proxy.url)

    code, out, err = run(capsys, "--bucket", BUCKET, "--regions", "us-east-1")

    # S3 now holds hosts files of a serial that mapping.json does not have yet.
    new_serial = hosts_serial(s3, bucket, HOSTS[0])
    assert new_serial > old_serial
    assert parse_document(read_object(s3, bucket, MAPPING)).serial == old_serial
    assert code == 1
    assert_one_line(err)
    assert err == (
        f"tagdns: cannot write s3://{BUCKET}/{MAPPING}: AccessDenied: Access Denied; "
        f"already written for serial {new_serial}: {HOSTS[0]}, {HOSTS[1]}; "
        f"mapping.json was not updated and still holds serial {old_serial}; "
        "the next successful publish rewrites whatever differs\n"
    )
    lines = out.splitlines()
    assert "  + api" in lines
    assert f"changed: serial {old_serial} -> {new_serial}" in lines
    assert [line for line in lines if line.startswith("wrote ")] == [
        f"wrote s3://{BUCKET}/{key}" for key in HOSTS
    ]
    assert "done in" not in out

    # The next clean run repairs S3 even when the fleet went back to the published
    # document: the hosts files are compared with S3 and rewritten.
    monkeypatch.undo()
    fleet.terminate("us-east-1", *added)
    code, out, err = run(capsys, "--bucket", BUCKET, "--regions", "us-east-1")
    assert (code, err) == (0, "")
    assert f"unchanged: serial {old_serial} stays" in out.splitlines()
    assert parse_document(read_object(s3, bucket, MAPPING)).serial == old_serial
    assert [hosts_serial(s3, bucket, key) for key in HOSTS] == [old_serial, old_serial]


def test_a_put_failing_before_anything_was_written_says_so(
    fleet: Fleet,
    s3: S3Client,
    bucket: str,
    refusing_proxy: PutRefusingProxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet.launch("us-east-1", "web1")
    refusing_proxy.refuse = ""  # every PUT
    monkeypatch.setenv("AWS_ENDPOINT_URL", refusing_proxy.url)

    code, out, err = run(capsys, "--bucket", BUCKET, "--regions", "us-east-1")

    assert code == 1
    assert err == (
        f"tagdns: cannot write s3://{BUCKET}/{HOSTS[0]}: AccessDenied: Access Denied; "
        "nothing was written\n"
    )
    assert "  + web1" in out.splitlines()
    assert "wrote " not in out
    assert object_versions(s3, bucket) == {}


@pytest.mark.parametrize(
    ("current", "holds"),
    [
        ("absent", "mapping.json was not written and S3 still has none"),
        (
            "invalid",
            "mapping.json was not replaced and still holds the invalid object; "
            "agents keep the document they last accepted",
        ),
        ("valid", "mapping.json was not updated and still holds serial {old}"),
    ],
)
def test_a_failed_mapping_put_says_what_s3_still_holds(
    fleet: Fleet,
    s3: S3Client,
    bucket: str,
    refusing_proxy: PutRefusingProxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    current: str,
    holds: str,
) -> None:
    fleet.launch("us-east-1", "web1")
    flags: tuple[str, ...] = ()
    old = None
    if current == "valid":
        assert run(capsys, "--bucket", BUCKET, "--regions", "us-east-1")[0] == 0
        old = parse_document(read_object(s3, bucket, MAPPING)).serial
        fleet.launch("us-east-1", "api")
    elif current == "invalid":
        s3.put_object(Bucket=bucket, Key=MAPPING, Body=b'{"schema": 2}')
        flags = ("--force",)  # what replaces an invalid object
    before = object_versions(s3, bucket).get(MAPPING)
    stored = read_object(s3, bucket, MAPPING) if before else None
    refusing_proxy.refuse = "/mapping.json"
    monkeypatch.setenv("AWS_ENDPOINT_URL", refusing_proxy.url)

    code, _, err = run(capsys, "--bucket", BUCKET, "--regions", "us-east-1", *flags)

    new_serial = hosts_serial(s3, bucket, HOSTS[0])
    assert code == 1
    assert_one_line(err)
    assert err == (
        f"tagdns: cannot write s3://{BUCKET}/{MAPPING}: AccessDenied: Access Denied; "
        f"already written for serial {new_serial}: {HOSTS[0]}, {HOSTS[1]}; "
        f"{holds.format(old=old)}; the next successful publish rewrites whatever differs\n"
    )
    # What the message says S3 holds is what it holds.
    assert object_versions(s3, bucket).get(MAPPING) == before
    if stored is not None:
        assert read_object(s3, bucket, MAPPING) == stored
