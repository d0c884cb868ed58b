"""Hypothesis strategies for valid core values: names, hosts, rejections, documents."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

from hypothesis import strategies as st

from resolver.core.addresses import address_sort_key
from resolver.core.document import (
    MAX_SERIAL,
    HostEntry,
    MappingDocument,
    Rejection,
    format_timestamp,
    make_document,
)
from resolver.core.names import validate_name
from resolver.errors import InvalidName

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1")


def _is_valid_name(name: str) -> bool:
    try:
        return validate_name(name, "internal") == name
    except InvalidName:
        return False


_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = _LETTERS + "0123456789"


def _labels(first: str) -> st.SearchStrategy[str]:
    """LDH labels by construction (no filtering, which is slow)."""
    tail = st.builds(
        lambda middle, last: middle + last,
        st.text(_ALNUM + "-", max_size=8),
        st.sampled_from(_ALNUM),
    )
    return st.builds(lambda head, rest: head + rest, st.sampled_from(first), st.just("") | tail)


names = st.builds(
    lambda head, last: ".".join([*head, last]),
    st.lists(_labels(_ALNUM), max_size=2),
    _labels(_LETTERS),  # a last label starting with a letter is never all-numeric
).filter(_is_valid_name)
regions = st.sampled_from(REGIONS)
instance_ids = st.text("0123456789abcdef", min_size=17, max_size=17).map(lambda h: "i-" + h)
ipv4s = st.ip_addresses(v=4).map(str)
ipv6s = st.ip_addresses(v=6).map(lambda a: ipaddress.IPv6Address(a).compressed)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(format_timestamp)


@st.composite
def host_entries(draw: st.DrawFn, region: st.SearchStrategy[str] = regions) -> HostEntry:
    chosen = draw(region)
    return HostEntry(
        name=draw(names),
        region=chosen,
        instance_id=draw(instance_ids),
        az=chosen + draw(st.sampled_from("abcdef")),
        private_ipv4=draw(ipv4s),
        public_ipv4=draw(st.none() | ipv4s),
        ipv6=tuple(sorted(set(draw(st.lists(ipv6s, max_size=3))), key=address_sort_key)),
    )


rejections = st.builds(
    Rejection,
    region=regions,
    instance_id=instance_ids,
    value=st.text(max_size=40),
    reason=st.text(max_size=40),
)


@st.composite
def documents(draw: st.DrawFn) -> MappingDocument:
    hosts = draw(st.lists(host_entries(), max_size=6, unique_by=lambda h: (h.name, h.instance_id)))
    extra_regions = draw(st.lists(regions, max_size=3))
    return make_document(
        serial=draw(st.integers(min_value=0, max_value=MAX_SERIAL)),
        generated_at=draw(timestamps),
        tag_key=draw(st.text(min_size=1, max_size=20)),
        regions=[*extra_regions, *(h.region for h in hosts)],
        hosts=hosts,
        rejected=draw(st.lists(rejections, max_size=4)),
    )
