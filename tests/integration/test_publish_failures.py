"""Failures of ``tagdns publish``: one line on stderr, the right exit code, nothing written."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from devsupport.net import free_port
from resolver.adapters.ec2_scan import scan_regions
from resolver.cli import main
from resolver.errors import AwsError
from tests.integration.conftest import Fleet, object_versions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

TAGDNS = Path(sys.executable).with_name("tagdns")
BUCKET = "fleet-config"


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
    assert "no AWS credentials found" in done.stderr
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
