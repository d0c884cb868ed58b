"""Configuration: one TOML file, frozen dataclasses, unknown keys rejected by name.

Defaults match DESIGN.md. Command-line flags override the file through
``dataclasses.replace``; validation happens once, here, so the rest of the code
can trust every value it is handed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resolver.core.buckets import check_bucket_name, check_prefix
from resolver.core.document import REGION_PATTERN
from resolver.core.endpoints import Endpoint, parse_endpoint
from resolver.core.publish_settings import MAX_TAG_KEY, check_zone_text
from resolver.core.source_url import parse_source
from resolver.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/tagdns/tagdns.toml")
MIN_POLL_INTERVAL = 1.0
"""Seconds. A typo such as ``--poll 0.01`` would have every node of a fleet ask S3
a hundred times a second."""
MAX_POLL_INTERVAL = 86400.0
"""Seconds: a day. ``--poll 1e308`` would have the agent never look at its source again
(a changed file is still seen at once, and SIGHUP still fetches)."""
NONE = "none"
AUTO = "auto"


@dataclass(frozen=True)
class SourceConfig:
    url: str = "s3://fleet-config/dns/mapping.json"
    poll_interval: float = 30.0
    cache_path: str = "/var/lib/tagdns/mapping.json"
    max_shrink: float = 0.5


@dataclass(frozen=True)
class ViewConfig:
    region: str = AUTO
    zone: str = "internal"
    cross_region: str = "public"
    authoritative: bool = False


@dataclass(frozen=True)
class DnsConfig:
    listen: tuple[str, ...] = ("127.0.0.53:53",)
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    upstream: tuple[str, ...] = (AUTO,)
    ttl: int = 30
    negative_ttl: int = 30


@dataclass(frozen=True)
class HostsConfig:
    path: str = ""
    dnsmasq_file: str = ""
    dnsmasq_pidfile: str = ""


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9153"  # "" or "none": no metrics endpoint
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Networks that may scrape; beyond loopback they must be named, as for DNS."""


@dataclass(frozen=True)
class PublishConfig:
    bucket: str = ""
    prefix: str = "dns"
    regions: tuple[str, ...] = ("all",)
    tag_key: str = "dns"


@dataclass(frozen=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    view: ViewConfig = field(default_factory=ViewConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    hosts: HostsConfig = field(default_factory=HostsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)


_SECTIONS: dict[str, type[Any]] = {
    "source": SourceConfig,
    "view": ViewConfig,
    "dns": DnsConfig,
    "hosts": HostsConfig,
    "metrics": MetricsConfig,
    "publish": PublishConfig,
}


def _coerce(value: object, default: object, where: str) -> object:
    """Check a TOML value against the type of the field's default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{where}: unsupported value {value!r}")  # pragma: no cover


def config_from_mapping(
    raw: Mapping[str, Any], origin: str = "config", *, validate: bool = True
) -> Config:
    """Build and validate a Config from parsed TOML; errors name ``origin`` and the key.

    ``validate`` False leaves the cross-field checks (``validate_config``) to a caller
    that first applies flags: they override the file, so only the result must hold.
    Unknown keys and wrong types are errors either way.
    """
    sections: dict[str, Any] = {}
    for section_name, section_value in raw.items():
        section_type = _SECTIONS.get(section_name)
        if section_type is None:
            raise ConfigError(f"{origin}: unknown section [{section_name}]")
        if not isinstance(section_value, dict):
            raise ConfigError(f"{origin}: [{section_name}] must be a table")
        defaults = section_type()
        known = {f.name for f in dataclasses.fields(section_type)}
        values: dict[str, object] = {}
        for key, value in section_value.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown key {key!r} in [{section_name}]")
            where = f"{origin}: [{section_name}] {key}"
            values[key] = _coerce(value, getattr(defaults, key), where)
        sections[section_name] = section_type(**values)
    config = Config(**sections)
    if validate:
        validate_config(config, origin)
    return config


def config_origin(path: Path | None) -> str:
    """What settings read by ``load_config(path)`` are attributed to in errors: the file
    read (``--config``, or the default file when present), else the command line."""
    if path is not None:
        return str(path)
    return str(DEFAULT_CONFIG_PATH) if DEFAULT_CONFIG_PATH.exists() else "command line"


def load_config(path: Path | None, *, validate: bool = True) -> Config:
    """Read ``path``, or the default file when present, or return defaults.

    ``validate`` as for ``config_from_mapping``.
    """
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return Config()
        path = DEFAULT_CONFIG_PATH
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    return config_from_mapping(raw, str(path), validate=validate)


def override(section: Any, **changes: object) -> Any:
    """Replace the fields given on the command line (None means 'not given')."""
    given = {key: value for key, value in changes.items() if value is not None}
    return dataclasses.replace(section, **given) if given else section


def listen_endpoints(config: DnsConfig) -> list[Endpoint]:
    return [parse_endpoint(text, what="[dns] listen") for text in config.listen]


_LOOPBACK = {4: ipaddress.ip_network("127.0.0.0/8"), 6: ipaddress.ip_network("::1/128")}
_LOCAL_CLIENT = {4: ipaddress.ip_address("127.0.0.1"), 6: ipaddress.ip_address("::1")}
"""Where a client on the node comes from when it connects to any loopback address
(Linux picks the loopback interface's primary address as the source, 127.0.0.1
for 127.0.0.53 too), so what a loopback listen address's ``allow`` must hold."""
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def allowed_networks(
    config: DnsConfig | MetricsConfig,
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    section = "dns" if isinstance(config, DnsConfig) else "metrics"
    networks = []
    for text in config.allow:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(f"[{section}] allow: {text!r} is not a network") from None
    return networks


def _check_upstream(upstream: tuple[str, ...]) -> None:
    """Each entry is ``auto``, ``none`` (alone) or ``ADDR[:PORT]``."""
    if not upstream:
        raise ConfigError("[dns] upstream needs at least one entry ('none' to forward nothing)")
    if NONE in upstream and len(upstream) > 1:
        raise ConfigError("[dns] upstream: 'none' must stand alone")
    for text in upstream:
        if text not in (AUTO, NONE):
            endpoint = parse_endpoint(text, default_port=53, what="[dns] upstream")
            if endpoint.port == 0:
                raise ConfigError(
                    f"[dns] upstream {text}: port 0 cannot be asked (leave the port out for 53)"
                )


def validate_config(
    config: Config,
    origin: str = "config",
    *,
    flagged: Container[tuple[str, str]] = (),
    flagged_origin: str = "command line",
) -> None:
    """Cross-field checks; raises ConfigError naming the key at fault.

    ``origin`` is where the settings come from (a file, "command line"); a check of
    a ``(section, key)`` in ``flagged`` (set over the file, by a flag or a variable)
    names ``flagged_origin`` instead.
    """

    def at(section: str, *keys: str) -> str:
        return flagged_origin if any((section, key) in flagged for key in keys) else origin

    source = config.source
    try:
        # Here rather than where the source is first read: ``check`` would say "ok:
        # config" first, and the error would name neither the file nor the key.
        flag = ("source", "url") in flagged
        parse_source(source.url, "--source" if flag else "[source] url")
    except ConfigError as exc:
        raise ConfigError(f"{at('source', 'url')}: {exc}") from None
    if not MIN_POLL_INTERVAL <= source.poll_interval <= MAX_POLL_INTERVAL:  # nan fails too
        raise ConfigError(
            f"{at('source', 'poll_interval')}: [source] poll_interval must be "
            f"{MIN_POLL_INTERVAL:g} to {MAX_POLL_INTERVAL:g} seconds, not "
            f"{source.poll_interval:g} (every poll is a request from every node; a day at "
            "most keeps nodes current)"
        )
    if not 0.0 <= source.max_shrink <= 1.0:
        raise ConfigError(
            f"{at('source', 'max_shrink')}: [source] max_shrink must be between 0 and 1"
        )
    _validate_view(config.view, at)
    dns = config.dns
    for name, value in (("ttl", dns.ttl), ("negative_ttl", dns.negative_ttl)):
        if not 0 <= value <= 86400:
            raise ConfigError(f"{at('dns', name)}: [dns] {name} must be 0 to 86400 seconds")
    try:
        _check_upstream(dns.upstream)
    except ConfigError as exc:
        raise ConfigError(f"{at('dns', 'upstream')}: {exc}") from None
    where = at("dns", "listen", "allow")
    try:
        listen = listen_endpoints(dns)
        networks = allowed_networks(dns)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    _validate_metrics(config.metrics, at("metrics", "listen", "allow"))
    if not listen:
        raise ConfigError(f"{where}: [dns] listen needs at least one address")
    _check_listen_addresses(listen, where)
    metrics_where = at("metrics", "listen")
    _check_metrics_apart(config.metrics, listen, where if where != origin else metrics_where)
    _check_allow(networks, where)
    if any(not e.is_loopback for e in listen) and all(n.is_loopback for n in networks):
        raise ConfigError(
            f"{where}: [dns] listen has a non-loopback address; "
            "[dns] allow must name the client networks beyond loopback"
        )
    for endpoint in listen:
        # A loopback address is reached only from its own family's loopback: the
        # node itself, which ``allow`` must then name (it replaces the default).
        if not endpoint.is_loopback:
            continue
        client = _LOCAL_CLIENT[endpoint.family_version]
        if not any(client in n for n in networks):
            raise ConfigError(
                f"{where}: [dns] listen {endpoint} is a loopback address, reached from "
                f"{client}, which [dns] allow does not include, so its clients would get no "
                f"answer; add '{_LOOPBACK[endpoint.family_version]}' to allow"
            )
    _validate_hosts(config.hosts, at("hosts", "path", "dnsmasq_file", "dnsmasq_pidfile"))
    _validate_publish(config.publish, at)


def _validate_metrics(metrics: MetricsConfig, where: str) -> None:
    """The metrics endpoint answers only the networks named, loopback by default."""
    if metrics.listen in ("", NONE):
        return
    try:
        endpoint = parse_endpoint(metrics.listen, what="[metrics] listen")
        networks = allowed_networks(metrics)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    _check_allow(networks, where, section="metrics")
    _check_address_form(endpoint, where, "[metrics] listen")
    if not endpoint.is_loopback and all(n.is_loopback for n in networks):
        raise ConfigError(
            f"{where}: [metrics] listen {endpoint} is not loopback; [metrics] allow must "
            "name the networks that may scrape it (its metrics name the bucket and upstreams)"
        )
    # ``tagdns status`` on the node is the documented way to read them. It connects
    # from 127.0.0.1 (or ::1) to a loopback or wildcard address, and from the address
    # itself to any other: refused, it would say "not an agent" of a healthy one. As
    # with a loopback [dns] listen address that [dns] allow leaves out, the address is
    # unusable as configured: an error.
    address = ipaddress.ip_address(endpoint.host.split("%", 1)[0])
    local = address.is_loopback or address.is_unspecified
    client = _LOCAL_CLIENT[address.version] if local else address
    if not any(client in n for n in networks):
        shown = _LOOPBACK[address.version] if local else ipaddress.ip_network(address)
        raise ConfigError(
            f"{where}: [metrics] allow does not include {client}, from which `tagdns status` "
            f"on this node reaches [metrics] listen {endpoint}; add '{shown}' to allow"
        )


def _check_metrics_apart(metrics: MetricsConfig, listen: list[Endpoint], where: str) -> None:
    """The metrics endpoint (TCP) cannot share an address and port with DNS (UDP and
    TCP): ``check`` would find each free on its own, and ``serve`` would fail to bind."""
    if metrics.listen in ("", NONE):
        return
    endpoint = parse_endpoint(metrics.listen, what="[metrics] listen")
    address = ipaddress.ip_address(endpoint.host)
    for dns in listen:
        other = ipaddress.ip_address(dns.host)
        if endpoint.port == 0 or dns.port != endpoint.port or other.version != address.version:
            continue
        if address == other or address.is_unspecified:
            raise ConfigError(
                f"{where}: [metrics] listen {endpoint} is also a [dns] listen address, whose "
                "TCP port DNS holds; give the metrics another port"
            )


def _check_listen_addresses(listen: list[Endpoint], where: str) -> None:
    seen: set[Endpoint] = set()
    for endpoint in listen:
        if endpoint in seen and endpoint.port != 0:
            # Each is free on its own for ``check``; ``serve`` binds the first, then
            # fails on the second with "Address already in use".
            raise ConfigError(
                f"{where}: [dns] listen {endpoint} is listed twice; an address can be bound once"
            )
        seen.add(endpoint)
        if ipaddress.ip_address(endpoint.host).is_unspecified:
            # A UDP reply would leave from whichever address the kernel routes it from,
            # not the one the client asked: clients drop it as an answer from a stranger.
            raise ConfigError(
                f"{where}: [dns] listen {endpoint}: a wildcard address cannot be answered "
                "from correctly over UDP; list the addresses instead "
                "(e.g. 127.0.0.53:53 and the node's own)"
            )
        _check_address_form(endpoint, where, "[dns] listen")


def _check_address_form(endpoint: Endpoint, where: str, key: str) -> None:
    """IPv6 listen addresses a socket can be bound to as they are written."""
    address = ipaddress.ip_address(endpoint.host)
    if not isinstance(address, ipaddress.IPv6Address):
        return
    if address.ipv4_mapped is not None:
        raise ConfigError(f"{where}: {key} {endpoint}: write an IPv4 address as IPv4")
    if address.is_link_local and not address.scope_id:
        raise ConfigError(
            f"{where}: {key} {endpoint}: a link-local address needs its interface, "
            f"as [{endpoint.host}%eth0]:{endpoint.port}"
        )


def _check_allow(
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    where: str,
    *,
    section: str = "dns",
) -> None:
    """Never open to everyone, however the networks are written."""
    for network in networks:
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
            raise ConfigError(
                f"{where}: [{section}] allow: {str(network)!r} is written in IPv4-mapped form, "
                "which no client matches; write IPv4 networks as IPv4"
            )
    opened = "an open resolver" if section == "dns" else "the endpoint open to everyone"
    for version in (4, 6):
        same = [n for n in networks if n.version == version]
        if any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(same)):  # type: ignore[type-var]
            raise ConfigError(
                f"{where}: [{section}] allow: {', '.join(repr(str(n)) for n in same)} would "
                f"make {opened}; name the client networks"
            )


def flagged_keys(file: Config, merged: Config) -> set[tuple[str, str]]:
    """The ``(section, key)`` pairs whose value in ``merged`` differs from ``file``'s.

    A value no flag replaced is the file's own object, so identity comes first: a
    ``nan`` from the file is never equal to itself, and would be blamed on a flag.
    """

    def same(first: object, second: object) -> bool:
        return first is second or first == second

    return {
        (section.name, key.name)
        for section in dataclasses.fields(Config)
        for key in dataclasses.fields(getattr(file, section.name))
        if not same(
            getattr(getattr(file, section.name), key.name),
            getattr(getattr(merged, section.name), key.name),
        )
    }


def _validate_view(view: ViewConfig, at: Callable[..., str]) -> None:
    try:
        check_zone_text(view.zone, "[view] zone")
    except ConfigError as exc:
        raise ConfigError(f"{at('view', 'zone')}: {exc}") from None
    if view.region not in (AUTO, "public") and not REGION_PATTERN.match(view.region):
        raise ConfigError(
            f"{at('view', 'region')}: [view] region {view.region!r} is not a region, public or auto"
        )
    if view.cross_region not in ("public", "private"):
        raise ConfigError(
            f"{at('view', 'cross_region')}: [view] cross_region must be 'public' or 'private'"
        )


def _validate_hosts(hosts: HostsConfig, origin: str) -> None:
    if hosts.dnsmasq_pidfile and not hosts.dnsmasq_file:
        raise ConfigError(f"{origin}: [hosts] dnsmasq_pidfile is set but dnsmasq_file is not")
    if hosts.path and hosts.dnsmasq_file and same_file(hosts.path, hosts.dnsmasq_file):
        # The agent merges its block into ``path``, then writes ``dnsmasq_file`` whole:
        # on one file that second write would erase localhost and every user line.
        raise ConfigError(
            f"{origin}: [hosts] path and [hosts] dnsmasq_file name the same file "
            f"({hosts.path!r} and {hosts.dnsmasq_file!r}); the dnsmasq file is written "
            "whole, so it must be a file of its own"
        )


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file: after symbolic links, ``..`` and the working
    directory are resolved, or as one inode (a hard link) when both exist."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def _validate_publish(publish: PublishConfig, at: Callable[..., str]) -> None:
    regions = at("publish", "regions")
    if not publish.regions:
        raise ConfigError(f"{regions}: [publish] regions must be ['all'] or name regions")
    if "all" in publish.regions and len(publish.regions) > 1:
        raise ConfigError(f"{regions}: [publish] regions: 'all' cannot be combined with regions")
    for region in publish.regions:
        if region != "all" and not REGION_PATTERN.match(region):
            raise ConfigError(f"{regions}: [publish] regions: {region!r} is not a region")
    check_prefix(publish.prefix, "[publish] prefix", "[publish] bucket", at("publish", "prefix"))
    if not 0 < len(publish.tag_key) <= MAX_TAG_KEY or not publish.tag_key.strip():
        raise ConfigError(
            f"{at('publish', 'tag_key')}: [publish] tag_key must be 1 to {MAX_TAG_KEY} "
            "characters, not blank"
        )
    if publish.bucket:
        try:
            check_bucket_name(publish.bucket, "[publish] bucket", "[publish] prefix")
        except ConfigError as exc:
            raise ConfigError(f"{at('publish', 'bucket', 'prefix')}: {exc}") from None
