"""Configuration: DESIGN.md defaults, strict keys and types, errors naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from resolver import cli_agent
from resolver.cli import build_parser, main
from resolver.config import (
    Config,
    DnsConfig,
    HostsConfig,
    MetricsConfig,
    PublishConfig,
    SourceConfig,
    ViewConfig,
    allowed_networks,
    config_from_mapping,
    listen_endpoints,
    load_config,
    override,
)
from resolver.core.endpoints import Endpoint
from resolver.errors import ConfigError, UsageError

FULL_TOML = """
[source]
url = "file:///srv/mapping.json"
poll_interval = 12.5
cache_path = "none"
max_shrink = 0.25

[view]
region = "eu-west-1"
zone = "fleet.internal"
cross_region = "private"
authoritative = true

[dns]
listen = ["10.0.0.53:53", "[::1]:5353"]
allow = ["10.0.0.0/8", "::1/128"]
upstream = ["10.0.0.2", "[fd00::2]:53"]
ttl = 60
negative_ttl = 5

[hosts]
path = "/etc/hosts"
dnsmasq_file = "/etc/tagdns/dnsmasq.hosts"
dnsmasq_pidfile = "/run/dnsmasq/dnsmasq.pid"

[metrics]
listen = "127.0.0.1:9153"

[publish]
bucket = "my-bucket"
prefix = "dns/prod"
regions = ["us-east-1", "eu-west-1"]
tag_key = "Name"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tagdns.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_design() -> None:
    assert Config() == Config(
        source=SourceConfig(
            url="s3://fleet-config/dns/mapping.json",
            poll_interval=30.0,
            cache_path="/var/lib/tagdns/mapping.json",
            max_shrink=0.5,
        ),
        view=ViewConfig(region="auto", zone="internal", cross_region="public", authoritative=False),
        dns=DnsConfig(
            listen=("127.0.0.53:53",),
            allow=("127.0.0.0/8", "::1/128"),
            upstream=("auto",),
            ttl=30,
            negative_ttl=30,
        ),
        hosts=HostsConfig(path="", dnsmasq_file="", dnsmasq_pidfile=""),
        metrics=MetricsConfig(listen="127.0.0.1:9153"),
        publish=PublishConfig(bucket="", prefix="dns", regions=("all",), tag_key="dns"),
    )
    assert config_from_mapping({}) == Config()


def test_full_file_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL_TOML))
    assert config == Config(
        source=SourceConfig("file:///srv/mapping.json", 12.5, "none", 0.25),
        view=ViewConfig("eu-west-1", "fleet.internal", "private", True),
        dns=DnsConfig(
            listen=("10.0.0.53:53", "[::1]:5353"),
            allow=("10.0.0.0/8", "::1/128"),
            upstream=("10.0.0.2", "[fd00::2]:53"),
            ttl=60,
            negative_ttl=5,
        ),
        hosts=HostsConfig("/etc/hosts", "/etc/tagdns/dnsmasq.hosts", "/run/dnsmasq/dnsmasq.pid"),
        metrics=MetricsConfig("127.0.0.1:9153"),
        publish=PublishConfig("my-bucket", "dns/prod", ("us-east-1", "eu-west-1"), "Name"),
    )
    assert listen_endpoints(config.dns) == [Endpoint("10.0.0.53", 53), Endpoint("::1", 5353)]
    assert [str(n) for n in allowed_networks(config.dns)] == ["10.0.0.0/8", "::1/128"]


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path, '[view]\nregion = "us-east-1"\n[dns]\nlisten = "127.0.0.1:5353"\n')
    )
    assert config.view == ViewConfig(region="us-east-1")
    assert config.dns == DnsConfig(listen=("127.0.0.1:5353",))
    assert config.source == SourceConfig()
    assert config.publish == PublishConfig()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[sauce]\nurl = 'x'\n", "unknown section [sauce]"),
        ("[source]\nurll = 'x'\n", "unknown key 'urll' in [source]"),
        (
            "[dns]\nlisten = ['127.0.0.1:53']\nallow_all = true\n",
            "unknown key 'allow_all' in [dns]",
        ),
        ("source = 'x'\n", "[source] must be a table"),
        ("[source]\npoll_interval = '30'\n", "[source] poll_interval: expected a number, got '30'"),
        ("[source]\npoll_interval = true\n", "[source] poll_interval: expected a number, got True"),
        ("[source]\nurl = 5\n", "[source] url: expected a string, got 5"),
        (
            "[view]\nauthoritative = 'yes'\n",
            "[view] authoritative: expected true or false, got 'yes'",
        ),
        ("[view]\nauthoritative = 1\n", "[view] authoritative: expected true or false, got 1"),
        ("[dns]\nttl = 30.0\n", "[dns] ttl: expected an integer, got 30.0"),
        ("[dns]\nttl = true\n", "[dns] ttl: expected an integer, got True"),
        ("[dns]\nlisten = [53]\n", "[dns] listen: expected a list of strings, got [53]"),
        ("[dns]\nupstream = {a = 1}\n", "[dns] upstream: expected a list of strings"),
        ("[publish]\nregions = 1\n", "[publish] regions: expected a list of strings, got 1"),
        ("[source]\n[source.extra]\n", "unknown key 'extra' in [source]"),
    ],
    ids=[
        "unknown-section",
        "unknown-key",
        "unknown-key-dns",
        "section-not-table",
        "string-for-number",
        "bool-for-number",
        "number-for-string",
        "string-for-bool",
        "int-for-bool",
        "float-for-int",
        "bool-for-int",
        "list-of-ints",
        "table-for-list",
        "int-for-list",
        "sub-table",
    ],
)
def test_shape_errors_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = _write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {message}" or str(caught.value).startswith(
        f"{path}: {message}"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"source": {"poll_interval": 0}}, "[source] poll_interval must be 1 to 86400 seconds"),
        ({"source": {"poll_interval": -1.5}}, "[source] poll_interval must be 1 to 86400 seconds"),
        (
            {"source": {"poll_interval": float("inf")}},
            "[source] poll_interval must be 1 to 86400 seconds",
        ),
        (
            {"source": {"poll_interval": float("nan")}},
            "[source] poll_interval must be 1 to 86400 seconds",
        ),
        ({"source": {"poll_interval": 0.01}}, "[source] poll_interval must be 1 to 86400 seconds"),
        ({"source": {"max_shrink": 1.5}}, "[source] max_shrink must be between 0 and 1"),
        ({"source": {"max_shrink": -0.1}}, "[source] max_shrink must be between 0 and 1"),
        ({"source": {"max_shrink": float("nan")}}, "[source] max_shrink must be between 0 and 1"),
        ({"view": {"zone": ""}}, "[view] zone ''"),
        ({"view": {"zone": "bad zone"}}, "[view] zone 'bad zone'"),
        ({"view": {"zone": "internal."}}, "[view] zone 'internal.'"),
        ({"view": {"zone": "Internal"}}, "[view] zone 'Internal' must be lowercase"),
        ({"view": {"zone": " internal"}}, "[view] zone ' internal' must be lowercase"),
        ({"view": {"zone": "z\u00f6ne"}}, "[view] zone 'z\u00f6ne'"),
        ({"view": {"region": "mars-north-1x"}}, "[view] region 'mars-north-1x' is not a region"),
        ({"view": {"region": "US-EAST-1"}}, "[view] region 'US-EAST-1' is not a region"),
        ({"view": {"region": "us-east-\u0661"}}, "[view] region 'us-east-\u0661' is not a region"),
        ({"view": {"cross_region": "both"}}, "[view] cross_region must be 'public' or 'private'"),
        ({"dns": {"ttl": -1}}, "[dns] ttl must be 0 to 86400 seconds"),
        ({"dns": {"ttl": 86401}}, "[dns] ttl must be 0 to 86400 seconds"),
        ({"dns": {"negative_ttl": -5}}, "[dns] negative_ttl must be 0 to 86400 seconds"),
        ({"dns": {"listen": []}}, "[dns] listen needs at least one address"),
        ({"dns": {"listen": ["127.0.0.53"]}}, "[dns] listen '127.0.0.53': expected ADDR:PORT"),
        ({"dns": {"allow": ["10.0.0.0/33"]}}, "[dns] allow: '10.0.0.0/33' is not a network"),
        ({"dns": {"listen": ["10.0.0.53:53"]}}, "[dns] listen has a non-loopback address"),
        (
            {"dns": {"listen": ["10.0.0.53:53"], "allow": []}},
            "[dns] listen has a non-loopback address",
        ),
        (
            {"dns": {"listen": ["10.0.0.53:53"], "allow": ["0.0.0.0/0"]}},
            "[dns] allow: '0.0.0.0/0' would make an open resolver",
        ),
        (
            {"dns": {"listen": ["10.0.0.53:53"], "allow": ["0.0.0.0/1", "128.0.0.0/1"]}},
            "[dns] allow: '0.0.0.0/1', '128.0.0.0/1' would make an open resolver",
        ),
        (
            {"dns": {"allow": ["127.0.0.0/8", "::/1", "8000::/1"]}},
            "[dns] allow: '::/1', '8000::/1' would make an open resolver",
        ),
        (
            {"dns": {"allow": ["127.0.0.0/8", "::ffff:10.0.0.0/104"]}},
            "[dns] allow: '::ffff:a00:0/104' is written in IPv4-mapped form, which no client",
        ),
        ({"dns": {"listen": ["0.0.0.0:53"]}}, "[dns] listen 0.0.0.0:53: a wildcard address"),
        ({"dns": {"listen": ["[::]:53"]}}, "[dns] listen [::]:53: a wildcard address"),
        ({"dns": {"listen": ["[::ffff:127.0.0.1]:53"]}}, "write an IPv4 address as IPv4"),
        (
            {"dns": {"listen": ["[fe80::1]:53"], "allow": ["fe80::/64"]}},
            "[dns] listen [fe80::1]:53: a link-local address needs its interface, as "
            "[fe80::1%eth0]:53",
        ),
        ({"dns": {"allow": ["::/0"]}}, "[dns] allow: '::/0' would make an open resolver"),
        (
            {"dns": {"listen": ["127.0.0.1:53"], "allow": ["10.0.0.0/8"]}},
            "[dns] listen 127.0.0.1:53 is a loopback address, reached from 127.0.0.1, which "
            "[dns] allow does not include, so its clients would get no answer; add "
            "'127.0.0.0/8' to allow",
        ),
        (
            {"dns": {"listen": ["127.0.0.53:53", "[::1]:53"], "allow": ["127.0.0.1/32"]}},
            "[dns] listen [::1]:53 is a loopback address, reached from ::1, which [dns] allow "
            "does not include",
        ),
        (
            {"dns": {"listen": ["[fd00::53]:53", "127.0.0.53:53"], "allow": ["fd00::/8"]}},
            "add '127.0.0.0/8' to allow",
        ),
        ({"dns": {"upstream": []}}, "[dns] upstream needs at least one entry"),
        ({"dns": {"upstream": ["dns.google"]}}, "[dns] upstream 'dns.google': 'dns.google' is not"),
        ({"dns": {"upstream": ["none", "1.1.1.1"]}}, "[dns] upstream: 'none' must stand alone"),
        ({"metrics": {"listen": "localhost:9153"}}, "[metrics] listen 'localhost:9153'"),
        (
            {"metrics": {"listen": "10.0.0.5:9153"}},
            "[metrics] listen 10.0.0.5:9153 is not loopback; [metrics] allow must name",
        ),
        (
            {"metrics": {"listen": "10.0.0.5:9153", "allow": ["0.0.0.0/0"]}},
            "[metrics] allow: '0.0.0.0/0' would make the endpoint open to everyone",
        ),
        ({"metrics": {"allow": ["nope"]}}, "[metrics] allow: 'nope' is not a network"),
        (
            {"metrics": {"listen": "[fe80::1]:9153", "allow": ["fe80::/64"]}},
            "[metrics] listen [fe80::1]:9153: a link-local address needs its interface",
        ),
        (
            {"metrics": {"listen": "[::ffff:127.0.0.1]:9153"}},
            "[metrics] listen [::ffff:7f00:1]:9153: write an IPv4 address as IPv4",
        ),
        ({"publish": {"regions": ["us-east-1", "everywhere"]}}, "[publish] regions: 'everywhere'"),
        ({"publish": {"prefix": "/dns"}}, "[publish] prefix '/dns' is not a relative key"),
        ({"publish": {"prefix": "dns/../x"}}, "[publish] prefix 'dns/../x' is not a relative key"),
        ({"publish": {"tag_key": ""}}, "[publish] tag_key must be 1 to 128 characters"),
        ({"publish": {"tag_key": "k" * 129}}, "[publish] tag_key must be 1 to 128 characters"),
        ({"publish": {"tag_key": " "}}, "[publish] tag_key must be 1 to 128 characters, not blank"),
        ({"publish": {"regions": []}}, "[publish] regions must be ['all'] or name regions"),
        ({"publish": {"regions": ["all", "us-east-1"]}}, "[publish] regions: 'all' cannot be"),
        ({"view": {"zone": "ec2.internal"}}, "[view] zone 'ec2.internal' would shadow AWS's"),
        (
            {"view": {"zone": "eu-west-1.compute.internal"}},
            "[view] zone 'eu-west-1.compute.internal' would shadow AWS's",
        ),
        ({"view": {"zone": "in-addr.arpa"}}, "[view] zone 'in-addr.arpa' ends in the reserved"),
        ({"view": {"zone": "localhost"}}, "[view] zone 'localhost' ends in the reserved name"),
        ({"view": {"zone": "com"}}, "[view] zone 'com' is a top-level domain of the public DNS"),
        ({"view": {"zone": "a" * 254}}, "[view] zone '" + "a" * 254 + "' must be 1 to 253 octets"),
        ({"hosts": {"dnsmasq_pidfile": "/run/dnsmasq.pid"}}, "[hosts] dnsmasq_pidfile is set but"),
    ],
    ids=[
        "poll-zero",
        "poll-negative",
        "poll-inf",
        "poll-nan",
        "poll-too-often",
        "shrink-high",
        "shrink-negative",
        "shrink-nan",
        "zone-empty",
        "zone-space",
        "zone-trailing-dot",
        "zone-uppercase",
        "zone-leading-space",
        "zone-non-ascii",
        "region-bad",
        "region-uppercase",
        "region-arabic-digit",
        "cross-region",
        "ttl-negative",
        "ttl-high",
        "negative-ttl",
        "listen-empty",
        "listen-no-port",
        "allow-bad",
        "non-loopback-default-allow",
        "non-loopback-empty-allow",
        "open-resolver-v4",
        "open-resolver-v4-in-halves",
        "open-resolver-v6-in-halves",
        "allow-ipv4-mapped",
        "listen-wildcard-v4",
        "listen-wildcard-v6",
        "listen-ipv4-mapped",
        "listen-link-local-without-zone",
        "open-resolver-v6",
        "loopback-listen-not-allowed",
        "loopback-v6-listen-not-allowed",
        "v6-and-loopback-listen-v4-not-allowed",
        "upstream-empty",
        "upstream-hostname",
        "upstream-none-mixed",
        "metrics-hostname",
        "metrics-beyond-loopback-without-allow",
        "metrics-open",
        "metrics-allow-bad",
        "metrics-link-local-without-zone",
        "metrics-ipv4-mapped",
        "publish-region",
        "prefix-absolute",
        "prefix-dotdot",
        "tag-key-empty",
        "tag-key-long",
        "tag-key-blank",
        "publish-regions-empty",
        "publish-regions-all-and-more",
        "zone-aws-ec2",
        "zone-aws-compute",
        "zone-reverse",
        "zone-localhost",
        "zone-public-tld",
        "zone-too-long",
        "pidfile-without-dnsmasq-file",
    ],
)
def test_invalid_values_name_the_key(raw: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, "tagdns.toml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("tagdns.toml: ")
    assert caught.value.exit_code == 2
    assert isinstance(caught.value, UsageError)


@pytest.mark.parametrize(
    "raw",
    [
        {"dns": {"listen": ["10.0.0.53:53"], "allow": ["10.0.0.0/8"]}},
        {
            "dns": {
                "listen": ["[fd00::53]:53", "127.0.0.53:53", "[fe80::53%lo]:53"],
                "allow": ["fd00::/8", "fe80::/64", "127.0.0.0/8"],
            }
        },
        {"dns": {"listen": ["127.0.0.1:53", "[::1]:53"], "allow": ["127.0.0.1/32", "::1/128"]}},
        {"dns": {"upstream": ["none"]}},
        {"dns": {"upstream": ["auto", "10.0.0.2:5353", "::1"]}},
        {"dns": {"ttl": 0, "negative_ttl": 86400}},
        {"metrics": {"listen": ""}},
        {"metrics": {"listen": "10.0.0.5:9153", "allow": ["10.0.0.5/32", "10.0.9.0/24"]}},
        {"metrics": {"listen": "none"}},
        {"view": {"region": "public"}},
        {"view": {"region": "us-gov-west-1"}},
        {"source": {"max_shrink": 0, "poll_interval": 1}},
        {"source": {"max_shrink": 1}},
        {"publish": {"regions": ["all"], "prefix": ""}},
    ],
    ids=[
        "non-loopback-with-allow",
        "v6-link-local-with-allow",
        "loopback-with-narrow-allow",
        "upstream-none",
        "upstream-mixed",
        "ttl-bounds",
        "metrics-empty",
        "metrics-beyond-loopback-with-allow",
        "metrics-none",
        "region-public",
        "region-gov",
        "shrink-zero",
        "shrink-one",
        "empty-prefix",
    ],
)
def test_valid_values(raw: dict[str, dict[str, object]]) -> None:
    config = config_from_mapping(raw)
    for section, values in raw.items():
        for key, value in values.items():
            got = getattr(getattr(config, section), key)
            assert got == (tuple(value) if isinstance(value, list) else value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"{tmp_path}: is a directory"


def test_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[source\nurl = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: invalid TOML: ")
    assert "line 1" in str(caught.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[publish]\nbucket = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: not UTF-8 text"


def test_symlink_loop(tmp_path: Path) -> None:
    path = tmp_path / "loop.toml"
    path.symlink_to(path)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_load_none_without_default_file_gives_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("resolver.config.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_config(None) == Config()


def test_load_none_reads_default_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _write(tmp_path, '[view]\nregion = "public"\n')
    monkeypatch.setattr("resolver.config.DEFAULT_CONFIG_PATH", path)
    assert load_config(None).view.region == "public"


def test_override_ignores_none() -> None:
    source = SourceConfig()
    assert override(source, url=None, poll_interval=None) is source
    changed = override(source, url="file:///x", poll_interval=None, max_shrink=0.0)
    assert changed == dataclasses.replace(source, url="file:///x", max_shrink=0.0)
    assert override(source) is source


def test_override_rejects_unknown_field() -> None:
    with pytest.raises(TypeError):
        override(SourceConfig(), colour="red")


def test_only_auto_upstreams_are_chosen_again_on_sighup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed upstreams stay as configured; ``auto`` re-reads resolv.conf when asked."""
    found = [[Endpoint("10.0.0.2", 53)], [Endpoint("10.0.0.3", 53)]]
    monkeypatch.setattr(cli_agent, "upstreams_for", lambda _config: found.pop(0))
    base = Config(source=SourceConfig(url="/srv/mapping.json"), view=ViewConfig(region="eu-west-1"))
    plan = cli_agent.build_plan(base)
    assert plan.upstreams == (Endpoint("10.0.0.2", 53),)
    assert plan.rechoose_upstreams is not None
    assert list(plan.rechoose_upstreams()) == [Endpoint("10.0.0.3", 53)]
    monkeypatch.setattr(cli_agent, "upstreams_for", lambda _config: [Endpoint("10.0.0.9", 53)])
    fixed = dataclasses.replace(base, dns=DnsConfig(upstream=("10.0.0.9",)))
    assert cli_agent.build_plan(fixed).rechoose_upstreams is None


@pytest.mark.parametrize(
    ("file_text", "flags"),
    [
        ('[dns]\nlisten = ["10.1.2.3:53"]\n', ["--listen", "127.0.0.1:5363"]),
        ('[dns]\nallow = ["10.0.0.0/8"]\n', ["--listen", "10.1.2.3:53"]),
        ("[source]\npoll_interval = 0.5\n", ["--poll", "5"]),
    ],
    ids=["listen-overridden", "allow-fits-the-flag", "poll-overridden"],
)
def test_flags_override_the_file_before_it_is_judged(
    tmp_path: Path, file_text: str, flags: list[str]
) -> None:
    """Only the settings in force must hold: a file value a flag replaces is not one."""
    path = tmp_path / "tagdns.toml"
    path.write_text(file_text)
    args = build_parser().parse_args(["serve", "--config", str(path), *flags])
    cli_agent.config_with_flags(args)  # no ConfigError
    with pytest.raises(ConfigError, match=str(path)):  # the file alone is invalid
        load_config(path)


def test_the_merged_configuration_is_still_judged(tmp_path: Path) -> None:
    path = tmp_path / "tagdns.toml"
    path.write_text('[dns]\nlisten = ["127.0.0.1:53"]\n')
    args = build_parser().parse_args(["serve", "--config", str(path), "--listen", "10.1.2.3:53"])
    with pytest.raises(ConfigError, match=r"\[dns\] allow must name the client networks"):
        cli_agent.config_with_flags(args)


@pytest.mark.parametrize(
    ("file_text", "flags", "message"),
    [
        (
            '[dns]\nallow = ["0.0.0.0/0"]\n',
            ["--upstream", "10.0.0.2"],
            "{path}: [dns] allow: '0.0.0.0/0' would make an open resolver",
        ),
        (
            '[dns]\nupstream = ["127.0.0.1:0"]\n',
            [],
            "{path}: [dns] upstream 127.0.0.1:0: port 0 cannot be asked",
        ),
        (
            '[dns]\nupstream = ["127.0.0.1:0"]\n',
            ["--listen", "127.0.0.1:5353"],
            "{path}: [dns] upstream 127.0.0.1:0: port 0 cannot be asked",
        ),
        (
            "[source]\npoll_interval = 10\n",
            ["--poll", "0.5"],
            "command line: [source] poll_interval must be 1 to 86400 seconds",
        ),
    ],
    ids=["file-allow-beside-a-flag", "file-upstream-port-0", "file-upstream-beside-listen", "flag"],
)
def test_errors_name_where_the_setting_came_from(
    tmp_path: Path, file_text: str, flags: list[str], message: str
) -> None:
    path = _write(tmp_path, file_text)
    args = build_parser().parse_args(["serve", "--config", str(path), *flags])
    with pytest.raises(ConfigError) as caught:
        cli_agent.config_with_flags(args)
    assert str(caught.value).startswith(message.format(path=path))


def test_errors_in_the_default_file_name_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No --config, but /etc/tagdns/tagdns.toml was read: the error is in that file."""
    path = _write(tmp_path, "[dns]\nttl = -1\n")
    monkeypatch.setattr("resolver.config.DEFAULT_CONFIG_PATH", path)
    args = build_parser().parse_args(["serve", "--listen", "127.0.0.1:5353"])
    with pytest.raises(ConfigError, match=f"^{path}: \\[dns\\] ttl must be 0 to 86400"):
        cli_agent.config_with_flags(args)


@pytest.mark.parametrize(
    ("path", "dnsmasq_file"),
    [
        ("{tmp}/hosts", "{tmp}/hosts"),
        ("hosts", "{tmp}/hosts"),
        ("hosts", "./sub/../hosts"),
        ("{tmp}/hosts", "{tmp}/link"),
        ("{tmp}/hosts", "{tmp}/hardlink"),
        ("{tmp}/absent", "absent"),
    ],
    ids=["same-text", "relative-and-absolute", "dot-dot", "symlink", "hard-link", "not-yet-there"],
)
def test_hosts_path_and_dnsmasq_file_must_be_two_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, dnsmasq_file: str
) -> None:
    """The dnsmasq file is written whole: on the hosts file it would erase every user line."""
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "hosts")
    (tmp_path / "hardlink").hardlink_to(tmp_path / "hosts")
    monkeypatch.chdir(tmp_path)
    raw = {
        "hosts": {
            "path": path.format(tmp=tmp_path),
            "dnsmasq_file": dnsmasq_file.format(tmp=tmp_path),
        }
    }
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, "tagdns.toml")
    message = str(caught.value)
    assert message.startswith("tagdns.toml: [hosts] path and [hosts] dnsmasq_file name the same")
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_hosts_path_and_dnsmasq_file_side_by_side_are_fine(tmp_path: Path) -> None:
    raw = {"hosts": {"path": f"{tmp_path}/hosts", "dnsmasq_file": f"{tmp_path}/dnsmasq.hosts"}}
    assert config_from_mapping(raw).hosts.dnsmasq_file == f"{tmp_path}/dnsmasq.hosts"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"dns": {"listen": ["127.0.0.1:53", "127.0.0.1:53"]}},
            "[dns] listen 127.0.0.1:53 is listed twice; an address can be bound once",
        ),
        (
            {"dns": {"listen": ["[::1]:53", "[0:0::1]:53"]}},
            "[dns] listen [::1]:53 is listed twice; an address can be bound once",
        ),
        (
            {"dns": {"listen": ["127.0.0.1:5353"]}, "metrics": {"listen": "127.0.0.1:5353"}},
            "[metrics] listen 127.0.0.1:5353 is also a [dns] listen address, whose TCP port "
            "DNS holds; give the metrics another port",
        ),
        (
            {"metrics": {"listen": "0.0.0.0:53", "allow": ["127.0.0.0/8", "10.0.0.0/8"]}},
            "[metrics] listen 0.0.0.0:53 is also a [dns] listen address, whose TCP port "
            "DNS holds; give the metrics another port",
        ),
        (
            {"metrics": {"allow": ["10.0.0.0/8"]}},
            "[metrics] allow does not include 127.0.0.1, from which `tagdns status` on this "
            "node reaches [metrics] listen 127.0.0.1:9153; add '127.0.0.0/8' to allow",
        ),
        (
            {"metrics": {"listen": "[::1]:9153", "allow": ["127.0.0.0/8"]}},
            "[metrics] allow does not include ::1, from which `tagdns status` on this "
            "node reaches [metrics] listen [::1]:9153; add '::1/128' to allow",
        ),
        (
            {"metrics": {"listen": "10.0.0.5:9153", "allow": ["10.0.9.0/24"]}},
            "[metrics] allow does not include 10.0.0.5, from which `tagdns status` on this "
            "node reaches [metrics] listen 10.0.0.5:9153; add '10.0.0.5/32' to allow",
        ),
        (
            {"metrics": {"listen": "0.0.0.0:9153", "allow": ["10.0.0.0/8"]}},
            "[metrics] allow does not include 127.0.0.1, from which `tagdns status` on this "
            "node reaches [metrics] listen 0.0.0.0:9153; add '127.0.0.0/8' to allow",
        ),
        (
            {"metrics": {"listen": "127.0.0.2:9153", "allow": ["127.0.0.2/32"]}},
            "[metrics] allow does not include 127.0.0.1, from which `tagdns status` on this "
            "node reaches [metrics] listen 127.0.0.2:9153; add '127.0.0.0/8' to allow",
        ),
        (
            {"dns": {"listen": ["127.0.0.2:53"], "allow": ["127.0.0.2/32"]}},
            "[dns] listen 127.0.0.2:53 is a loopback address, reached from 127.0.0.1, which "
            "[dns] allow does not include, so its clients would get no answer; add "
            "'127.0.0.0/8' to allow",
        ),
    ],
    ids=[
        "dns-listen-twice",
        "dns-listen-twice-spelled-differently",
        "metrics-on-a-dns-address",
        "metrics-wildcard-on-the-dns-port",
        "metrics-loopback-not-allowed",
        "metrics-ipv6-loopback-not-allowed",
        "metrics-address-not-allowed",
        "metrics-wildcard-without-loopback",
        "metrics-loopback-allowing-only-itself",
        "dns-loopback-allowing-only-itself",
    ],
)
def test_addresses_serve_could_not_use_are_config_errors(
    raw: dict[str, dict[str, object]], message: str
) -> None:
    """What ``check`` passes, ``serve`` must be able to bind and ``status`` to read."""
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, "tagdns.toml")
    assert str(caught.value) == f"tagdns.toml: {message}"


@pytest.mark.parametrize(
    "raw",
    [
        {"dns": {"listen": ["127.0.0.1:0", "127.0.0.1:0"]}},
        {"dns": {"listen": ["127.0.0.1:53", "[::1]:53"]}},
        {"metrics": {"listen": "127.0.0.53:9153"}},
        {"metrics": {"listen": "127.0.0.1:0"}, "dns": {"listen": ["127.0.0.1:0"]}},
        {"metrics": {"listen": "0.0.0.0:9153", "allow": ["127.0.0.0/8", "10.0.0.0/8"]}},
        {"metrics": {"listen": "10.0.0.5:53", "allow": ["10.0.0.0/24"]}},
    ],
    ids=[
        "port-zero-twice",
        "both-families",
        "metrics-beside-dns",
        "port-zero-both",
        "metrics-wildcard",
        "metrics-same-port-other-address",
    ],
)
def test_addresses_serve_can_use(raw: dict[str, dict[str, object]]) -> None:
    config_from_mapping(raw)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://x", "only s3://, file:// and plain paths are supported"),
        ("s3://bucket", "expected s3://BUCKET/KEY"),
        ("s3://bucket/", "expected s3://BUCKET/KEY"),
        ("s3:///key", "expected s3://BUCKET/KEY"),
        ("file://host/x", "expected file:///ABSOLUTE/PATH"),
        ("", "expected s3://BUCKET/KEY, file:///PATH or a path, not an empty string"),
    ],
    ids=["scheme", "s3-no-key", "s3-trailing-slash", "s3-no-bucket", "file-host", "empty"],
)
@pytest.mark.parametrize("command", ["check", "serve", "lookup web1", "hosts", "status", "publish"])
def test_a_bad_source_url_is_an_invalid_config_for_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, url: str, problem: str
) -> None:
    """Named where it was written, before ``check`` says the config is ok."""
    path = _write(tmp_path, f'[source]\nurl = "{url}"\n[view]\nregion = "us-east-1"\n')
    assert main([*command.split(), "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"tagdns: {path}: [source] url {url!r}: {problem}\n"


@pytest.mark.parametrize("command", ["check", "serve", "lookup web1", "hosts"])
def test_a_bad_source_flag_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = _write(tmp_path, '[view]\nregion = "us-east-1"\n')
    argv = [*command.split(), "--config", str(path), "--source", "s3://bucket"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err == "tagdns: command line: --source 's3://bucket': expected s3://BUCKET/KEY\n"
    )


@pytest.mark.parametrize("value", ["nan", "+nan", "-nan", "inf", "+inf", "-inf"])
@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("poll_interval", "[source] poll_interval must be"),
        ("max_shrink", "[source] max_shrink must be between 0 and 1"),
    ],
)
def test_nan_and_inf_in_the_file_are_blamed_on_the_file(
    tmp_path: Path, key: str, message: str, value: str
) -> None:
    """``flagged_keys`` must not take nan (never equal to itself) for a flag's value."""
    path = _write(tmp_path, f"[source]\n{key} = {value}\n")
    for command in (["serve"], ["check"], ["lookup", "web1"], ["hosts"]):
        args = build_parser().parse_args([*command, "--config", str(path)])
        with pytest.raises(ConfigError) as caught:
            cli_agent.config_with_flags(args)
        assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)
    with pytest.raises(ConfigError, match=f"^{path}: "):
        load_config(path)


@pytest.mark.parametrize(
    ("poll", "accepted"),
    [
        ("1", True),
        ("86400", True),
        ("86400.5", False),
        ("1e308", False),
        ("inf", False),
        ("0.999", False),
        ("nan", False),
    ],
)
def test_poll_flag_is_bounded_both_ways(poll: str, accepted: bool) -> None:
    """An interval of 1e308 s would leave every node on the names it started with."""
    args = build_parser().parse_args(["serve", "--poll", poll, "--config", "/dev/null"])
    if accepted:
        assert cli_agent.config_with_flags(args).source.poll_interval == float(poll)
        return
    with pytest.raises(ConfigError) as caught:
        cli_agent.config_with_flags(args)
    assert str(caught.value) == (
        f"command line: [source] poll_interval must be 1 to 86400 seconds, not {float(poll):g} "
        "(every poll is a request from every node; a day at most keeps nodes current)"
    )
