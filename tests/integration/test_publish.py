"""``tagdns publish`` end to end against a real moto_server: EC2 scan, document, S3 objects."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from resolver.cli import main
from resolver.core.document import parse_document
from tests.integration.conftest import Fleet, object_versions, read_object

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

BUCKET = "fleet-config"
MAPPING = "dns/mapping.json"
HOSTS_US = "dns/hosts/us-east-1.hosts"
HOSTS_EU = "dns/hosts/eu-west-1.hosts"
HOSTS_PUBLIC = "dns/hosts/public.hosts"
TWO_REGIONS = ["--bucket", BUCKET, "--prefix", "dns", "--regions", "us-east-1,eu-west-1"]

HOSTILE = {
    "newline": "evil\nname",
    "command": "$(reboot)",
    "quotes": '"quoted"',
    "space": "has space",
    "non_ascii": "café",
    "long_label": "a" * 64,
    "localhost": "localhost",
    "zone_suffix": "x.internal",
    "public_name": "sts.amazonaws.com",
}
HOSTILE_FRAGMENTS = (
    *("evil", "reboot", "$", "(", '"', "quoted", "has space", "caf", "a" * 64),
    "amazonaws",
)
HOSTS_LINE = re.compile(r"[0-9a-f:.]+ [a-z0-9-]+(?:\.[a-z0-9-]+)*(?: [a-z0-9-]+(?:\.[a-z0-9-]+)*)?")


def publish(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["publish", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def addresses(fleet: Fleet, region: str, instance_id: str) -> tuple[str, str | None, list[str]]:
    """(private IPv4, public IPv4, IPv6) as EC2 reports them."""
    reply = fleet.ec2(region).describe_instances(InstanceIds=[instance_id])
    raw = reply["Reservations"][0]["Instances"][0]
    ipv6 = [
        entry["Ipv6Address"]
        for interface in raw.get("NetworkInterfaces", [])
        for entry in interface.get("Ipv6Addresses", [])
    ]
    return raw["PrivateIpAddress"], raw.get("PublicIpAddress"), ipv6


def test_publish_two_regions_writes_document_and_hosts_files_as_designed(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    web1_us = fleet.launch("us-east-1", "web1, API", ipv6=True)[0]
    api_us = fleet.launch("us-east-1", "api")[0]
    db_us = fleet.launch("us-east-1", "db", public=False)[0]
    long_ok = fleet.launch("us-east-1", "b" * 63)[0]
    mixed = fleet.launch("us-east-1", "ok-name, bad;name")[0]
    hostile = {key: fleet.launch("us-east-1", value)[0] for key, value in HOSTILE.items()}
    stopped = fleet.launch("us-east-1", "stopped1")[0]
    fleet.stop("us-east-1", stopped)
    untagged = fleet.launch("us-east-1", None)[0]
    web1_eu = fleet.launch("eu-west-1", "web1")[0]
    cache_eu = fleet.launch("eu-west-1", "Cache")[0]

    code, out, err = publish(capsys, *TWO_REGIONS)

    assert (code, err) == (0, "")
    raw = read_object(s3, bucket, MAPPING)
    doc = json.loads(raw)
    # Canonical bytes: sorted keys, compact separators, ASCII, one trailing newline.
    assert raw == (
        json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"
    ).encode("ascii")
    assert list(doc) == [
        "generated_at",
        "hosts",
        "regions",
        "rejected",
        "schema",
        "serial",
        "tag_key",
    ]
    assert doc["schema"] == 1
    assert doc["tag_key"] == "dns"
    assert doc["regions"] == ["eu-west-1", "us-east-1"]
    assert isinstance(doc["serial"], int)
    assert doc["serial"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["generated_at"])
    parse_document(raw)  # what an agent would accept

    hosts = doc["hosts"]
    assert hosts == sorted(hosts, key=lambda h: (h["name"], h["region"], h["instance_id"]))
    assert all(
        set(h) == {"name", "region", "instance_id", "az", "private_ipv4", "public_ipv4", "ipv6"}
        for h in hosts
    )
    assert {(h["name"], h["region"], h["instance_id"]) for h in hosts} == {
        ("api", "us-east-1", web1_us),
        ("api", "us-east-1", api_us),
        ("b" * 63, "us-east-1", long_ok),
        ("cache", "eu-west-1", cache_eu),
        ("db", "us-east-1", db_us),
        ("ok-name", "us-east-1", mixed),
        ("web1", "eu-west-1", web1_eu),
        ("web1", "us-east-1", web1_us),
    }
    by_key = {(h["name"], h["instance_id"]): h for h in hosts}
    web1_private, web1_public, web1_v6 = addresses(fleet, "us-east-1", web1_us)
    assert web1_v6
    assert by_key["web1", web1_us] == {
        "name": "web1",
        "region": "us-east-1",
        "instance_id": web1_us,
        "az": "us-east-1a",
        "private_ipv4": web1_private,
        "public_ipv4": web1_public,
        "ipv6": web1_v6,
    }
    db_private, db_public, _ = addresses(fleet, "us-east-1", db_us)
    assert db_public is None
    assert by_key["db", db_us]["public_ipv4"] is None
    assert by_key["db", db_us]["private_ipv4"] == db_private
    assert all(h["instance_id"] not in (stopped, untagged) for h in hosts)

    rejected = {(r["instance_id"], r["value"]): r for r in doc["rejected"]}
    assert doc["rejected"] == sorted(
        doc["rejected"], key=lambda r: (r["region"], r["instance_id"], r["value"], r["reason"])
    )
    assert set(rejected) == {(hostile[key], value) for key, value in HOSTILE.items()} | {
        (mixed, " bad;name")
    }
    assert all(r["region"] == "us-east-1" for r in doc["rejected"])
    assert "non-ASCII" in rejected[hostile["non_ascii"], "café"]["reason"]
    assert "longer than 63" in rejected[hostile["long_label"], "a" * 64]["reason"]
    assert "localhost" in rejected[hostile["localhost"], "localhost"]["reason"]
    assert "zone suffix" in rejected[hostile["zone_suffix"], "x.internal"]["reason"]
    assert rejected[hostile["public_name"], "sts.amazonaws.com"]["reason"] == (
        "name 'sts.amazonaws.com' would shadow a name in the public DNS "
        "(.com is a top-level domain)"
    )

    # Hosts files: exact text of the us-east-1 view, shape of every line in every file.
    api_private, _, _ = addresses(fleet, "us-east-1", api_us)
    long_private, _, _ = addresses(fleet, "us-east-1", long_ok)
    mixed_private, _, _ = addresses(fleet, "us-east-1", mixed)
    cache_private, cache_public, _ = addresses(fleet, "eu-west-1", cache_eu)
    web1_eu_private, web1_eu_public, _ = addresses(fleet, "eu-west-1", web1_eu)
    api_addresses = sorted([web1_private, api_private], key=lambda a: tuple(map(int, a.split("."))))
    assert read_object(s3, bucket, HOSTS_US).decode("ascii").splitlines() == [
        "# tagdns: generated from the mapping document; edits here are overwritten",
        f"# view us-east-1, zone internal, serial {doc['serial']}",
        *(f"{address} api.internal api" for address in api_addresses),
        f"{web1_v6[0]} api.internal api",  # web1_us is also api
        f"{long_private} {'b' * 63}.internal {'b' * 63}",
        f"{cache_public} cache",
        f"{db_private} db.internal db",
        f"{mixed_private} ok-name.internal ok-name",
        f"{web1_private} web1.internal web1",
        f"{web1_v6[0]} web1.internal web1",
    ]
    eu_text = read_object(s3, bucket, HOSTS_EU).decode("ascii")
    assert f"{web1_eu_private} web1.internal web1\n" in eu_text
    assert f"{cache_private} cache.internal cache\n" in eu_text
    assert f"{db_private}" not in eu_text  # remote and without a public address: left out
    public_text = read_object(s3, bucket, HOSTS_PUBLIC).decode("ascii")
    assert f"{web1_eu_public} web1.internal web1\n" in public_text
    assert f"{web1_v6[0]} web1.internal web1\n" in public_text
    assert " db" not in public_text
    for key in (HOSTS_US, HOSTS_EU, HOSTS_PUBLIC):
        reply = s3.get_object(Bucket=bucket, Key=key)
        assert reply["ContentType"] == "text/plain"
        text = reply["Body"].read().decode("ascii")
        body = [line for line in text.splitlines() if not line.startswith("#")]
        assert body
        assert all(HOSTS_LINE.fullmatch(line) for line in body), body
        assert not any(fragment in text for fragment in HOSTILE_FRAGMENTS)
        assert "localhost" not in text
        assert "x.internal" not in text
    assert s3.get_object(Bucket=bucket, Key=MAPPING)["ContentType"] == "application/json"

    # The operator's summary: counts, rejected values shown inert, the diff, the keys.
    lines = out.splitlines()
    assert lines[0] == "scanned 2 regions in " + lines[0].split(" in ", 1)[1]
    assert "7 named instances, 6 names, 2 regions, 10 rejected tag values" in lines
    assert "  eu-west-1: 2 instances, 2 names" in lines
    assert "  us-east-1: 5 instances, 5 names" in lines
    assert f"  rejected us-east-1 {hostile['newline']}: 'evil\\nname': " in out
    assert "no current document: everything is new" in lines
    assert [line for line in lines if line.startswith("  + ")] == [
        "  + api",
        "  + " + "b" * 63,
        "  + cache",
        "  + db",
        "  + ok-name",
        "  + web1",
    ]
    assert any(line.startswith("  view public: 1 left out: db (") for line in lines)
    written = [line for line in lines if line.startswith("wrote ")]
    assert written[-1] == f"wrote s3://{BUCKET}/{MAPPING}"
    assert sorted(written[:-1]) == sorted(
        f"wrote s3://{BUCKET}/{key}" for key in (HOSTS_US, HOSTS_EU, HOSTS_PUBLIC)
    )
    assert lines[-1].startswith("done in ")
    assert object_versions(s3, bucket) == {MAPPING: 1, HOSTS_US: 1, HOSTS_EU: 1, HOSTS_PUBLIC: 1}


def test_more_reservations_than_one_page_are_all_published(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # moto pages DescribeInstances by reservation, 100 to a page by default:
    # 105 launches in us-east-1 need two pages; eu-west-1 needs one.
    ids = [fleet.launch("us-east-1", f"node-{i:03d}")[0] for i in range(105)]
    eu = fleet.launch("eu-west-1", "edge", count=3)

    code, out, _ = publish(capsys, *TWO_REGIONS)

    assert code == 0
    assert "(3 DescribeInstances pages)" in out.splitlines()[0]
    doc = parse_document(read_object(s3, bucket, MAPPING))
    published = {(h.name, h.instance_id) for h in doc.hosts}
    assert published == {(f"node-{i:03d}", ids[i]) for i in range(105)} | {
        ("edge", instance_id) for instance_id in eu
    }
    assert ("node-104", ids[104]) in published  # from the second page


def test_publishing_an_unchanged_fleet_writes_nothing(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1,api")
    fleet.launch("eu-west-1", "db")
    assert publish(capsys, *TWO_REGIONS)[0] == 0
    versions = object_versions(s3, bucket)
    etag = s3.head_object(Bucket=bucket, Key=MAPPING)["ETag"]
    first = read_object(s3, bucket, MAPPING)

    code, out, _ = publish(capsys, *TWO_REGIONS)

    assert code == 0
    assert object_versions(s3, bucket) == versions  # not one PUT, hosts files included
    assert s3.head_object(Bucket=bucket, Key=MAPPING)["ETag"] == etag
    assert read_object(s3, bucket, MAPPING) == first
    serial = json.loads(first)["serial"]
    assert f"unchanged: serial {serial} stays" in out
    assert "unchanged: nothing written" in out
    assert "wrote " not in out


def test_a_deleted_hosts_file_is_restored_without_touching_the_mapping(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1")
    fleet.launch("eu-west-1", "db")
    assert publish(capsys, *TWO_REGIONS)[0] == 0
    before = read_object(s3, bucket, HOSTS_PUBLIC)
    s3.delete_object(Bucket=bucket, Key=HOSTS_PUBLIC)

    code, out, _ = publish(capsys, *TWO_REGIONS)

    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("wrote ")] == [
        f"wrote s3://{BUCKET}/{HOSTS_PUBLIC}"
    ]
    assert read_object(s3, bucket, HOSTS_PUBLIC) == before
    assert object_versions(s3, bucket)[MAPPING] == 1


def test_a_dry_run_lists_the_hosts_file_a_real_run_would_restore(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fleet is unchanged but a hosts file is gone: the dry run must say it would be
    written, as the real run then writes it, not that nothing would change."""
    fleet.launch("us-east-1", "web1")
    fleet.launch("eu-west-1", "db")
    assert publish(capsys, *TWO_REGIONS)[0] == 0
    s3.delete_object(Bucket=bucket, Key=HOSTS_EU)
    versions = object_versions(s3, bucket)

    code, out, _ = publish(capsys, *TWO_REGIONS, "--dry-run")

    assert code == 0
    lines = out.splitlines()
    assert [line for line in lines if line.startswith(("would write ", "wrote "))] == [
        f"would write s3://{BUCKET}/{HOSTS_EU}"
    ]
    assert "dry run: nothing written" in lines
    assert object_versions(s3, bucket) == versions
    assert HOSTS_EU not in {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}

    code, out, _ = publish(capsys, *TWO_REGIONS)

    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("wrote ")] == [
        f"wrote s3://{BUCKET}/{HOSTS_EU}"
    ]

    code, out, _ = publish(capsys, *TWO_REGIONS, "--dry-run")

    assert code == 0
    assert "would write" not in out
    assert "dry run: nothing to write" in out.splitlines()


def test_terminating_an_instance_publishes_a_higher_serial_without_it(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1,api")
    fleet.launch("us-east-1", "db")
    gone = fleet.launch("eu-west-1", "cache")[0]
    fleet.launch("eu-west-1", "web1")
    assert publish(capsys, *TWO_REGIONS)[0] == 0
    first = parse_document(read_object(s3, bucket, MAPPING))
    fleet.terminate("eu-west-1", gone)

    code, out, _ = publish(capsys, *TWO_REGIONS)

    assert code == 0
    second = parse_document(read_object(s3, bucket, MAPPING))
    assert second.serial > first.serial
    assert gone not in {h.instance_id for h in second.hosts}
    assert second.names() == {"web1", "api", "db"}
    assert "  - cache" in out.splitlines()
    assert f"changed: serial {first.serial} -> {second.serial}" in out
    assert " cache" not in read_object(s3, bucket, HOSTS_PUBLIC).decode()
    assert object_versions(s3, bucket) == {MAPPING: 2, HOSTS_US: 2, HOSTS_EU: 2, HOSTS_PUBLIC: 2}


def test_dry_run_writes_nothing(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1")

    code, out, _ = publish(capsys, *TWO_REGIONS, "--dry-run")

    assert code == 0
    assert object_versions(s3, bucket) == {}
    assert "  + web1" in out.splitlines()
    assert "dry run: nothing written" in out

    assert publish(capsys, *TWO_REGIONS)[0] == 0
    fleet.launch("eu-west-1", "db")
    versions = object_versions(s3, bucket)
    code, out, _ = publish(capsys, *TWO_REGIONS, "--dry-run")
    assert code == 0
    assert "  + db" in out.splitlines()
    assert object_versions(s3, bucket) == versions


def test_shrink_guard_refuses_losing_most_names_and_force_passes_it(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = fleet.launch("us-east-1", "web1")[0]
    doomed = [fleet.launch("us-east-1", name)[0] for name in ("api", "db", "cache")]
    assert publish(capsys, *TWO_REGIONS)[0] == 0
    versions = object_versions(s3, bucket)
    fleet.terminate("us-east-1", *doomed)

    code, out, err = publish(capsys, *TWO_REGIONS)

    assert code == 1
    assert err.count("\n") == 1
    assert err == (
        "tagdns: new document loses 3 of 4 names (75%), more than the 50% allowed "
        "(api, cache, db); nothing written (--force publishes anyway)\n"
    )
    # The summary and diff come first: they are what the operator judges the refusal by.
    lines = out.splitlines()
    assert lines[0].startswith("scanned 2 regions in ")
    assert "1 named instances, 1 names, 2 regions, 0 rejected tag values" in lines
    assert [line for line in lines if line.startswith("  - ")] == ["  - api", "  - cache", "  - db"]
    assert not any(line.startswith("wrote ") for line in lines)
    assert object_versions(s3, bucket) == versions

    code, out, err = publish(capsys, *TWO_REGIONS, "--force")

    assert (code, err) == (0, "")
    doc = parse_document(read_object(s3, bucket, MAPPING))
    assert {(h.name, h.instance_id) for h in doc.hosts} == {("web1", keep)}
    assert object_versions(s3, bucket)[MAPPING] == 2


def test_a_dry_run_the_shrink_guard_refuses_still_prints_summary_and_diff(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1")
    doomed = [fleet.launch("eu-west-1", name)[0] for name in ("api", "db")]
    assert publish(capsys, *TWO_REGIONS)[0] == 0
    versions = object_versions(s3, bucket)
    fleet.terminate("eu-west-1", *doomed)

    code, out, err = publish(capsys, *TWO_REGIONS, "--dry-run")

    assert code == 1
    assert err == (
        "tagdns: new document loses 2 of 3 names (67%), more than the 50% allowed "
        "(api, db); nothing written (--force publishes anyway)\n"
    )
    lines = out.splitlines()
    assert lines[0].startswith("scanned 2 regions in ")
    assert "  eu-west-1: 0 instances, 0 names" in lines
    assert "  us-east-1: 1 instances, 1 names" in lines
    assert [line for line in lines if line.startswith("  - ")] == ["  - api", "  - db"]
    assert any(line.startswith("changed: serial ") for line in lines)
    assert object_versions(s3, bucket) == versions

    # With --force the dry run passes the guard and still writes nothing.
    code, out, err = publish(capsys, *TWO_REGIONS, "--dry-run", "--force")
    assert (code, err) == (0, "")
    assert "dry run: nothing written" in out.splitlines()
    assert object_versions(s3, bucket) == versions


def test_an_invalid_current_document_stops_publish_unless_forced(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1")
    s3.put_object(Bucket=bucket, Key=MAPPING, Body=b'{"schema": 2}')

    code, _, err = publish(capsys, *TWO_REGIONS)

    assert code == 1
    assert err == (
        f"tagdns: s3://{BUCKET}/{MAPPING}: current document is invalid: "
        "document: missing field 'generated_at' (--force replaces it)\n"
    )
    assert object_versions(s3, bucket) == {MAPPING: 1}

    code, out, err = publish(capsys, *TWO_REGIONS, "--force")

    assert (code, err) == (0, "")
    assert out.startswith(f"replacing invalid s3://{BUCKET}/{MAPPING} (--force): ")
    assert parse_document(read_object(s3, bucket, MAPPING)).names() == {"web1"}


def test_config_file_and_flags_combine(
    fleet: Fleet,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet.launch("eu-west-1", "web1", tag_key="Name-dns")
    fleet.launch("eu-west-1", "ignored")
    config = tmp_path / "tagdns.toml"
    config.write_text(
        f'[publish]\nbucket = "{BUCKET}"\nprefix = "from-file"\nregions = ["eu-west-1"]\n'
        'tag_key = "Name-dns"\n\n[view]\nzone = "fleet.example"\n'
    )

    code, _, err = publish(capsys, "--config", str(config), "--prefix", "from-flag")

    assert (code, err) == (0, "")
    doc = parse_document(read_object(s3, bucket, "from-flag/mapping.json"))
    assert doc.tag_key == "Name-dns"
    assert doc.regions == ("eu-west-1",)
    assert doc.names() == {"web1"}
    hosts = read_object(s3, bucket, "from-flag/hosts/eu-west-1.hosts").decode()
    assert " web1.fleet.example web1\n" in hosts
    assert not any(key.startswith("from-file/") for key in object_versions(s3, bucket))


def _wait_past(serial: int) -> None:
    """Serials are Unix times: let the clock pass ``serial`` so the next one is above it."""
    while time.time() < serial + 1:
        time.sleep(0.05)


def test_force_republishes_an_unchanged_fleet_above_a_restored_old_version(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1")
    fleet.launch("eu-west-1", "db")
    assert publish(capsys, *TWO_REGIONS)[0] == 0
    first = parse_document(read_object(s3, bucket, MAPPING))
    api = fleet.launch("us-east-1", "api")
    assert publish(capsys, *TWO_REGIONS)[0] == 0
    second = parse_document(read_object(s3, bucket, MAPPING))  # what agents now serve
    assert second.serial > first.serial
    # The fleet goes back to its first state and someone restores the first object version.
    fleet.terminate("us-east-1", *api)
    versions = s3.list_object_versions(Bucket=bucket, Prefix=MAPPING)["Versions"]
    # By content, not LastModified: two PUTs within one second tie on it.
    oldest = next(
        v["VersionId"]
        for v in versions
        if s3.get_object(Bucket=bucket, Key=MAPPING, VersionId=v["VersionId"])["Body"].read()
        == first.to_bytes()
    )
    s3.copy_object(
        Bucket=bucket,
        Key=MAPPING,
        CopySource={"Bucket": bucket, "Key": MAPPING, "VersionId": oldest},
    )
    assert parse_document(read_object(s3, bucket, MAPPING)) == first

    code, out, _ = publish(capsys, *TWO_REGIONS)

    # Without --force nothing changes: the content is the restored object's.
    assert code == 0
    assert f"unchanged: serial {first.serial} stays" in out.splitlines()
    assert parse_document(read_object(s3, bucket, MAPPING)) == first
    mapping_versions = object_versions(s3, bucket)[MAPPING]
    _wait_past(second.serial)

    code, out, err = publish(capsys, *TWO_REGIONS, "--force")

    assert (code, err) == (0, "")
    third = parse_document(read_object(s3, bucket, MAPPING))
    assert third.serial > second.serial  # agents holding the second document accept it
    assert third.same_content(first)
    assert third.generated_at > first.generated_at
    lines = out.splitlines()
    assert (
        f"forced, content unchanged: serial {first.serial} -> {third.serial} (--force republishes)"
        in lines
    )
    assert "unchanged: nothing written" not in lines
    assert [line for line in lines if line.startswith("wrote ")][-1] == (
        f"wrote s3://{BUCKET}/{MAPPING}"
    )
    assert object_versions(s3, bucket)[MAPPING] == mapping_versions + 1
    for key in (HOSTS_US, HOSTS_EU, HOSTS_PUBLIC):
        assert f", serial {third.serial}\n" in read_object(s3, bucket, key).decode()

    # Once republished, an unforced run is unchanged again and writes nothing.
    versions_after = object_versions(s3, bucket)
    code, out, _ = publish(capsys, *TWO_REGIONS)
    assert code == 0
    assert f"unchanged: serial {third.serial} stays" in out.splitlines()
    assert object_versions(s3, bucket) == versions_after


THREE_REGIONS = [
    "--bucket",
    BUCKET,
    "--prefix",
    "dns",
    "--regions",
    "us-east-1,eu-west-1,ap-southeast-2",
]
HOSTS_AP = "dns/hosts/ap-southeast-2.hosts"
DROPPED_AP = (
    "tagdns: new document drops region ap-southeast-2, which the current document has: "
    "agents there would refuse it; nothing written (--force publishes anyway)\n"
)


def test_narrowing_regions_is_refused_unless_forced_and_the_dropped_hosts_file_stays(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1,api")
    fleet.launch("eu-west-1", "db")
    fleet.launch("ap-southeast-2", "edge")
    assert publish(capsys, *THREE_REGIONS)[0] == 0
    first = parse_document(read_object(s3, bucket, MAPPING))
    ap_hosts = read_object(s3, bucket, HOSTS_AP)
    versions = object_versions(s3, bucket)

    # One name of four lost (25 %) passes the shrink guard; the dropped region does not.
    for extra in ((), ("--dry-run",)):
        code, out, err = publish(capsys, *TWO_REGIONS, *extra)

        assert (code, err) == (1, DROPPED_AP)
        lines = out.splitlines()
        assert (
            "  regions dropped: ap-southeast-2 (agents there would refuse this document)" in lines
        )
        assert "  - edge" in lines
        assert not any(line.startswith("wrote ") for line in lines)
        assert object_versions(s3, bucket) == versions

    code, out, err = publish(capsys, *TWO_REGIONS, "--dry-run", "--force")
    assert (code, err) == (0, "")
    assert "dry run: nothing written" in out.splitlines()
    assert object_versions(s3, bucket) == versions

    code, out, err = publish(capsys, *TWO_REGIONS, "--force")

    assert (code, err) == (0, "")
    second = parse_document(read_object(s3, bucket, MAPPING))
    assert second.regions == ("eu-west-1", "us-east-1")
    assert second.serial > first.serial
    # The dropped region's hosts file is neither deleted nor rewritten, and says so.
    assert read_object(s3, bucket, HOSTS_AP) == ap_hosts
    assert object_versions(s3, bucket)[HOSTS_AP] == 1
    lines = out.splitlines()
    assert f"left s3://{BUCKET}/{HOSTS_AP} as it was: its region is no longer published" in lines
    assert f"wrote s3://{BUCKET}/{HOSTS_AP}" not in lines

    # Widening again is no refusal: the region is named as added and its file rewritten.
    code, out, err = publish(capsys, *THREE_REGIONS)

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "  regions added: ap-southeast-2" in lines
    assert "  + edge" in lines
    assert f"wrote s3://{BUCKET}/{HOSTS_AP}" in lines
    assert parse_document(read_object(s3, bucket, MAPPING)).regions == (
        "ap-southeast-2",
        "eu-west-1",
        "us-east-1",
    )


def test_a_dropped_region_and_a_shrink_are_refused_in_one_line(
    fleet: Fleet, s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch("us-east-1", "web1")
    fleet.launch("ap-southeast-2", "edge,cdn")
    assert publish(capsys, *THREE_REGIONS)[0] == 0
    versions = object_versions(s3, bucket)

    code, out, err = publish(capsys, *TWO_REGIONS)

    assert code == 1
    assert err == (
        "tagdns: new document drops region ap-southeast-2, which the current document has: "
        "agents there would refuse it; new document loses 2 of 3 names (67%), more than the "
        "50% allowed (cdn, edge); nothing written (--force publishes anyway)\n"
    )
    assert "  regions dropped: ap-southeast-2 (agents there would refuse this document)" in (
        out.splitlines()
    )
    assert object_versions(s3, bucket) == versions
