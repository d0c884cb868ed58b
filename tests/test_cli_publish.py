"""``tagdns publish`` usage errors (exit 2, one line) and the example files in conf/.

None of these reach AWS: every case fails before the first call.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from resolver.cli import main
from resolver.config import (
    Config,
    DnsConfig,
    HostsConfig,
    PublishConfig,
    SourceConfig,
    ViewConfig,
    load_config,
)

CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    """An explicit empty config, so /etc/tagdns/tagdns.toml on the machine cannot interfere."""
    path = tmp_path / "tagdns.toml"
    path.write_text("")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "tagdns: the following arguments are required: COMMAND (see tagdns --help)"),
        (("frobnicate",), "tagdns: argument COMMAND: invalid choice: 'frobnicate'"),
        (("publish", "--bogus"), "tagdns: unrecognized arguments: --bogus"),
        (("publish", "--bucket"), "tagdns: publish: argument --bucket: expected one argument"),
        (("publish", "--regions", "us-east-1"), "tagdns: no bucket: pass --bucket or set"),
        (("publish", "--bucket", "bkt", "--regions", ""), "tagdns: --regions: expected 'all'"),
        (("publish", "--bucket", "bkt", "--regions", " , "), "tagdns: --regions: expected 'all'"),
        (("publish", "--bucket", "bkt", "--regions", "all,eu-west-1"), "tagdns: --regions: 'all'"),
        (("publish", "--bucket", "bkt", "--regions", "mars"), "tagdns: --regions: 'mars' is not"),
        (
            ("publish", "--bucket", "bkt", "--prefix", "/abs"),
            "tagdns: --prefix '/abs' is not a relative key: it starts with '/'\n",
        ),
        (
            ("publish", "--bucket", "bkt", "--prefix", "a/../b"),
            "tagdns: --prefix 'a/../b' is not a relative key: '..' is a segment of its own",
        ),
        (
            ("publish", "--bucket", "bkt", "--prefix", "s3://fleet-config/dns"),
            "tagdns: --prefix 's3://fleet-config/dns' is an s3:// URL, not a key prefix; "
            "use --bucket 'fleet-config' and --prefix 'dns'\n",
        ),
        (
            ("publish", "--bucket", "bkt", "--prefix", "dns "),
            "tagdns: --prefix 'dns ' holds whitespace or a control character (' ')\n",
        ),
        (
            ("publish", "--bucket", "bkt", "--prefix", "dns\n"),
            "tagdns: --prefix 'dns\\n' holds whitespace or a control character ('\\n')\n",
        ),
        (
            ("publish", "--bucket", "bkt", "--prefix", "./dns"),
            "tagdns: --prefix './dns' is not a relative key: '.' is a segment of its own",
        ),
        (
            ("publish", "--bucket", "bkt", "--prefix", "dns//x"),
            "tagdns: --prefix 'dns//x' has an empty segment ('//')",
        ),
        (
            ("publish", "--bucket", "bkt", "--prefix", "dns/mapping.json"),
            "tagdns: --prefix 'dns/mapping.json' names an object, not a prefix (the publisher "
            "adds mapping.json and hosts/ under it); use --prefix 'dns'\n",
        ),
        (("publish", "--bucket", "bkt", "--tag-key", " "), "tagdns: --tag-key: must not be empty"),
        (
            ("publish", "--bucket", "s3://fleet-config"),
            "tagdns: --bucket 's3://fleet-config': give the bucket name, not an s3:// URL; "
            "use --bucket 'fleet-config'\n",
        ),
        (
            ("publish", "--bucket", "s3://fleet-config/dns/"),
            "tagdns: --bucket 's3://fleet-config/dns/': give the bucket name, not an s3:// URL; "
            "use --bucket 'fleet-config' and --prefix 'dns'\n",
        ),
        (
            ("publish", "--bucket", "fleet-config/dns"),
            "tagdns: --bucket 'fleet-config/dns': a bucket name cannot contain '/'; "
            "use --bucket 'fleet-config' and --prefix 'dns'\n",
        ),
        (
            ("publish", "--bucket", "fleet_config!"),
            "tagdns: --bucket 'fleet_config!': a bucket name holds only lowercase letters, "
            "digits, '.' and '-', not '!'\n",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], empty_config: Path, argv: tuple[str, ...], message: str
) -> None:
    args = [*argv, "--config", str(empty_config)] if argv[:1] == ("publish",) else list(argv)
    if argv == ("publish", "--bucket"):
        args = ["publish", "--config", str(empty_config), "--bucket"]

    code, out, err = run(capsys, *args)

    assert (code, out) == (2, "")
    assert err.startswith(message)
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[publish]\nbucket = 3\n", "[publish] bucket: expected a string, got 3"),
        ("[publish]\nbukket = 'x'\n", "unknown key 'bukket' in [publish]"),
        ("[publsh]\n", "unknown section [publsh]"),
        ("[publish]\nregions = ['us-east-1', 'moon']\n", "[publish] regions: 'moon'"),
        ("[view]\nzone = 'bad zone'\n", "[view] zone 'bad zone'"),
        ("[source]\nmax_shrink = 2\n", "[source] max_shrink must be between 0 and 1"),
        ("not toml =", "invalid TOML"),
    ],
)
def test_config_errors_name_the_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)

    code, out, err = run(capsys, "publish", "--config", str(path), "--bucket", "bkt")

    assert (code, out) == (2, "")
    assert err.startswith(f"tagdns: {path}: ")
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("bucket", "hint"),
    [
        ("s3://fleet-config/dns", "give the bucket name, not an s3:// URL"),
        ("fleet-config/dns", "a bucket name cannot contain '/'"),
    ],
)
def test_a_bucket_url_in_the_config_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bucket: str, hint: str
) -> None:
    path = tmp_path / "tagdns.toml"
    path.write_text(f'[publish]\nbucket = "{bucket}"\n')

    code, out, err = run(capsys, "publish", "--config", str(path))

    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert f"bucket {bucket!r}: {hint}; use " in err
    assert "bucket 'fleet-config' and " in err
    assert "prefix 'dns'" in err


def test_a_prefix_in_the_config_file_is_checked_and_names_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "tagdns.toml"
    path.write_text('[publish]\nbucket = "bkt"\nprefix = "s3://fleet-config/dns"\n')

    code, out, err = run(capsys, "publish", "--config", str(path))

    assert (code, out) == (2, "")
    assert err == (
        f"tagdns: {path}: [publish] prefix 's3://fleet-config/dns' is an s3:// URL, not a key "
        "prefix; use [publish] bucket 'fleet-config' and [publish] prefix 'dns'\n"
    )


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    assert run(capsys, "publish", "--config", str(missing)) == (
        2,
        "",
        f"tagdns: {missing}: no such file\n",
    )


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "publish", "--help")

    assert code == 0
    assert "--dry-run" in out
    assert "--force" in out


def test_version_exits_0_with_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"tagdns {importlib.metadata.version('tagdns')}\n")


def test_example_config_loads_in_the_documented_shape() -> None:
    config = load_config(CONF / "tagdns.toml")

    # Every key with a default holds that default; the optional sections are filled in.
    assert config.source == SourceConfig()
    assert config.view == ViewConfig()
    assert config.dns == DnsConfig()
    assert config.publish == PublishConfig(bucket="fleet-config")
    assert config.metrics.listen == "127.0.0.1:9153"
    assert config != Config()
    # The shipped agent unit cannot write /etc or signal dnsmasq, so [hosts] is off.
    assert config.hosts == HostsConfig()


def test_example_config_hosts_keys_load_once_uncommented(tmp_path: Path) -> None:
    """The commented-out [hosts] example is valid as written, for a unit that has the rights."""
    text = (CONF / "tagdns.toml").read_text()
    assert "tagdns-hosts.service" in text
    uncommented = re.sub(r"(?m)^# (\[hosts\]|path =|dnsmasq_file =|dnsmasq_pidfile =)", r"\1", text)
    assert uncommented != text
    config_file = tmp_path / "tagdns.toml"
    config_file.write_text(uncommented)
    assert load_config(config_file).hosts == HostsConfig(
        path="/etc/hosts",
        dnsmasq_file="/etc/tagdns/dnsmasq.hosts",
        dnsmasq_pidfile="/run/dnsmasq/dnsmasq.pid",
    )


def test_example_policies_and_rules_are_valid_json_with_least_privilege() -> None:
    publisher = json.loads((CONF / "iam-publisher-policy.json").read_text())
    actions = {
        action
        for statement in publisher["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert actions == {
        "ec2:DescribeInstances",
        "ec2:DescribeRegions",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
    }
    assert all(s["Effect"] == "Allow" for s in publisher["Statement"])
    objects = [s for s in publisher["Statement"] if "s3:PutObject" in s["Action"]]
    assert [s["Resource"] for s in objects] == ["arn:aws:s3:::fleet-config/dns/*"]

    node = json.loads((CONF / "iam-node-policy.json").read_text())
    assert node["Statement"] == [
        {
            "Sid": "ReadTheMappingDocument",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::fleet-config/dns/mapping.json",
        }
    ]

    rules = json.loads((CONF / "publisher-eventbridge.json").read_text())
    assert rules["schedule"]["ScheduleExpression"] == "rate(5 minutes)"
    pattern = json.loads(rules["instance_state_change"]["EventPattern"])
    assert pattern["detail-type"] == ["EC2 Instance State-change Notification"]
    assert "running" in pattern["detail"]["state"]
    tag_pattern = json.loads(rules["dns_tag_change"]["EventPattern"])
    assert tag_pattern["detail"]["changed-tag-keys"] == ["dns"]
