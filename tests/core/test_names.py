"""Name validation: the first line of defence against hostile tag values."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.names import (
    NameRejection,
    any_shadows_public_name,
    check_zone,
    conflict_screen,
    is_plain_name,
    longest_name,
    shadows_public_name,
    split_tag_value,
    validate_name,
    zone_conflict,
)
from resolver.errors import InvalidName

LABEL_63 = "a" * 63
NAME_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
NAME_254 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])
NAME_244 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 52])
"""The longest name that ``internal`` can qualify: 244 + 1 + 8 = 253 octets."""

CHARS = "characters other than letters, digits and hyphens"


@pytest.mark.parametrize(
    ("raw", "zone", "expected"),
    [
        ("web1", "internal", "web1"),
        ("WEB1", "internal", "web1"),
        ("Api.Svc", "internal", "api.svc"),
        ("  web1  ", "internal", "web1"),
        ("\tweb1\n", "internal", "web1"),
        ("web-1", "internal", "web-1"),
        ("x--y", "internal", "x--y"),
        ("1web", "internal", "1web"),
        ("web.1a", "internal", "web.1a"),
        (LABEL_63, "internal", LABEL_63),
        (NAME_253, None, NAME_253),
        (NAME_244, "internal", NAME_244),
        ("web.internal", None, "web.internal"),
        ("web.internal", "fleet.internal", "web.internal"),
        ("internal-api", "internal", "internal-api"),
        ("myinternal", "internal", "myinternal"),
        ("localhost.web", "internal", "localhost.web"),
        ("ec2", "fleet.internal", "ec2"),
        ("app", "internal", "app"),
        ("COM", "internal", "com"),
        ("blue.corp", "internal", "blue.corp"),
        ("com.web", "internal", "com.web"),
    ],
    ids=[
        "plain",
        "uppercase",
        "mixed-case-two-labels",
        "spaces-stripped",
        "tab-newline-stripped",
        "hyphen-inside",
        "double-hyphen",
        "leading-digit",
        "numeric-first-label",
        "label-63",
        "name-253",
        "name-244-qualifies-in-internal",
        "no-zone-given",
        "other-zone",
        "zone-as-prefix",
        "zone-as-label-suffix",
        "localhost-not-last",
        "ec2-under-other-zone",
        "top-level-domain-as-one-label",
        "tld-alone-uppercase",
        "private-last-label",
        "tld-not-last",
    ],
)
def test_valid_names(raw: str, zone: str | None, expected: str) -> None:
    assert validate_name(raw, zone) == expected


@pytest.mark.parametrize(
    ("raw", "zone", "reason"),
    [
        ("web 1", "internal", CHARS),
        ("web\n1", "internal", CHARS),
        ("web\r\n1.2.3.4 evil", "internal", CHARS),
        ("$(reboot)", "internal", CHARS),
        ("`reboot`", "internal", CHARS),
        ("'web'", "internal", CHARS),
        ('"web"', "internal", CHARS),
        ("web;reboot", "internal", CHARS),
        ("web_1", "internal", CHARS),
        ("web/1", "internal", CHARS),
        ("*", "internal", CHARS),
        ("web\x00", "internal", CHARS),
        ("w\u00e9b", "internal", "non-ASCII"),
        ("\uff57\uff45\uff42", "internal", "non-ASCII"),
        ("\u0130stanbul", "internal", "non-ASCII"),
        ("\u212aube", "internal", "non-ASCII"),
        ("\u00a0web1", "internal", "non-ASCII"),
        ("web1\u2003", "internal", "non-ASCII"),
        ("\u3000web1\u3000", "internal", "non-ASCII"),
        ("\x1cweb1\x1f", "internal", CHARS),
        ("", "internal", "is empty"),
        ("   ", "internal", "is empty"),
        ("a..b", "internal", "empty label"),
        (".a", "internal", "empty label"),
        ("a.", "internal", "empty label"),
        ("-web", "internal", "starts or ends with a hyphen"),
        ("web-", "internal", "starts or ends with a hyphen"),
        ("a-.b", "internal", "starts or ends with a hyphen"),
        ("a" * 64, "internal", "label longer than 63 octets"),
        (NAME_254, "internal", "longer than 253 octets"),
        (NAME_253, "internal", "too long to serve as name.internal (262 octets"),
        (NAME_244 + "d", "fleet.internal", "too long to serve as name.fleet.internal"),
        ("localhost", "internal", "reserved name 'localhost'"),
        ("x.localhost", "internal", "reserved name 'localhost'"),
        ("LOCALHOST", "internal", "reserved name 'localhost'"),
        ("x.arpa", "internal", "reserved name 'arpa'"),
        ("4.3.2.1.in-addr.arpa", "internal", "reserved name 'arpa'"),
        ("1.2.3.4", "internal", "all-numeric"),
        ("10", "internal", "all-numeric"),
        ("internal", "internal", "zone suffix 'internal'"),
        ("web.internal", "internal", "zone suffix 'internal'"),
        ("Web.INTERNAL", "internal", "zone suffix 'internal'"),
        ("web.fleet.internal", "fleet.internal", "zone suffix 'fleet.internal'"),
        ("ip-10-0-0-5.ec2", "internal", "AWS"),
        ("ip-10-0-0-5.us-west-2.compute", "internal", "AWS"),
        ("ec2", "internal", "AWS"),
        ("ip-10-0-0-5.ec2.internal", "fleet.internal", "AWS"),
        ("ip-10-0-0-5.ec2.internal", None, "AWS"),
        ("github.com", "internal", "public DNS (.com is a top-level domain)"),
        ("GitHub.COM", "internal", "public DNS (.com is a top-level domain)"),
        ("sts.amazonaws.com", "internal", "public DNS (.com"),
        ("fleet-config.s3.us-east-1.amazonaws.com", "internal", "public DNS (.com"),
        ("web.prod", "internal", "public DNS (.prod"),
        ("xn--caf-dma.xn--p1ai", "internal", "public DNS (.xn--p1ai"),
    ],
    ids=[
        "space",
        "newline",
        "crlf-injection",
        "command-substitution",
        "backticks",
        "single-quotes",
        "double-quotes",
        "semicolon",
        "underscore",
        "slash",
        "wildcard",
        "nul",
        "accented",
        "fullwidth",
        "turkish-dotted-i",
        "kelvin-sign-lowercases-to-ascii",
        "no-break-space-before",
        "em-space-after",
        "ideographic-spaces-around",
        "ascii-separators-around",
        "empty",
        "only-spaces",
        "empty-middle-label",
        "leading-dot",
        "trailing-dot",
        "leading-hyphen",
        "trailing-hyphen",
        "label-trailing-hyphen",
        "label-64",
        "name-254",
        "name-253-too-long-to-qualify",
        "name-245-too-long-for-fleet-internal",
        "localhost",
        "under-localhost",
        "localhost-uppercase",
        "arpa",
        "reverse-name",
        "ipv4-literal",
        "all-digits",
        "equals-zone",
        "ends-in-zone",
        "ends-in-zone-mixed-case",
        "ends-in-dotted-zone",
        "shadows-ec2-internal",
        "shadows-compute-internal",
        "claims-ec2-internal",
        "bare-aws-name-other-zone",
        "bare-aws-name-no-zone",
        "public-name",
        "public-name-mixed-case",
        "aws-sts-endpoint",
        "s3-bucket-endpoint",
        "word-like-tld",
        "internationalised-tld",
    ],
)
def test_invalid_names(raw: str, zone: str | None, reason: str) -> None:
    with pytest.raises(InvalidName) as caught:
        validate_name(raw, zone)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "names", "rejections"),
    [
        ("web1, API ,,web1", ["web1", "api"], []),
        ("web1,", ["web1"], []),
        ("", [], [NameRejection("", "tag value holds no names")]),
        (" , ,, ", [], [NameRejection(" , ,, ", "tag value holds no names")]),
        (
            "web1,$(reboot), api",
            ["web1", "api"],
            [NameRejection("$(reboot)", f"name '$(reboot)' has {CHARS}")],
        ),
        (
            "web.internal, web",
            ["web"],
            [
                NameRejection(
                    "web.internal", "name 'web.internal' ends in the zone suffix 'internal'"
                )
            ],
        ),
        (
            " bad name ,localhost",
            [],
            [
                NameRejection(" bad name ", f"name 'bad name' has {CHARS}"),
                NameRejection(
                    "localhost", "name 'localhost' ends in the reserved name 'localhost'"
                ),
            ],
        ),
        (
            "web1,\u3000",
            ["web1"],
            [NameRejection("\u3000", "name '\\u3000' contains non-ASCII characters")],
        ),
    ],
    ids=[
        *("dedupe-strip-lower", "trailing-comma", "empty", "all-empty", "mixed", "zone"),
        *("all-bad", "unicode-space-is-not-empty"),
    ],
)
def test_split_tag_value(value: str, names: list[str], rejections: list[NameRejection]) -> None:
    assert split_tag_value(value, "internal") == (names, rejections)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("internal", "internal"),
        ("Fleet.Internal", "fleet.internal"),
        ("a-b.c", "a-b.c"),
        ("fleet.corp.example.com", "fleet.corp.example.com"),
    ],
    ids=["default", "uppercase", "hyphen", "own-public-domain"],
)
def test_check_zone_valid(zone: str, expected: str) -> None:
    assert check_zone(zone) == expected


@pytest.mark.parametrize(
    "zone",
    [
        "",
        "internal.",
        ".internal",
        "in ternal",
        "-internal",
        "z\u00f6ne",
        "a" * 64,
        "a." * 127 + "a",
        "\u00a0internal",
        "in-addr.arpa",
        "localhost",
        "lan.local",
        "10",
        "ec2.internal",
        "compute.internal",
        "us-east-1.compute.internal",
        "com",
        "Prod",
    ],
    ids=[
        *("empty", "trailing-dot", "leading-dot", "space", "hyphen", "non-ascii", "label-64"),
        *("254", "no-break-space", "reverse-zone", "localhost", "mdns", "numeric"),
        *("aws-ec2", "aws-compute", "aws-regional", "public-tld", "public-tld-uppercase"),
    ],
)
def test_check_zone_invalid(zone: str) -> None:
    with pytest.raises(InvalidName) as caught:
        check_zone(zone)
    assert "\n" not in str(caught.value)
    if zone.lower() in ("com", "prod"):
        assert "top-level domain of the public DNS" in str(caught.value)


_SHAPE = re.compile(r"[a-z0-9.-]+\Z")
_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")

hostile_text = (
    st.text()
    | st.text(alphabet="aZ09-.. \n\t$;'\"`\u00e9\u0130\uff41,")
    | st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9.-]{0,70}", fullmatch=True)
)


@settings(max_examples=250, deadline=None)
@given(raw=hostile_text, zone=st.sampled_from([None, "internal", "fleet.internal"]))
def test_any_string_is_a_safe_name_or_invalid(raw: str, zone: str | None) -> None:
    try:
        name = validate_name(raw, zone)
    except InvalidName as exc:
        assert "\n" not in str(exc)
        return
    assert _SHAPE.match(name)
    assert len(name.encode("ascii")) <= 253
    for label in name.split("."):
        assert 1 <= len(label) <= 63
        assert _LDH.match(label)
    if zone is not None:
        assert name != zone
        assert not name.endswith("." + zone)
    assert validate_name(name, zone) == name


@settings(max_examples=120, deadline=None)
@given(value=hostile_text)
def test_split_tag_value_partitions_every_part(value: str) -> None:
    names, rejections = split_tag_value(value, "internal")
    assert len(set(names)) == len(names)
    for name in names:
        assert validate_name(name, "internal") == name
    assert names or rejections
    parts = [part for part in value.split(",") if part.strip()]
    assert {r.value for r in rejections} <= {*parts, value}


_NEAR_NAMES = st.sampled_from(
    [
        "web1",
        "a" * 63,
        "a" * 64,
        "-web",
        "web-",
        "1234",
        "web.1234",
        "localhost",
        "x.arpa",
        "ec2.internal",
        "ip-10-0-0-1.ec2.internal",
        "compute.internal",
        "x.compute.internal",
        "internal",
        "Web1",
        " web1",
        "web1.",
        ".web1",
        "a..b",
        "a." * 126 + "b",
        "a." * 127 + "b",
        "xec2.internal",
        "ec2.internalx",
        "localhostx",
        "x.local",
        "local.x",
        "web.12a",
        "12.web",
        "web1\n",
        "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61,
        "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62,
    ]
)


@settings(max_examples=400, deadline=None)
@given(raw=hostile_text | _NEAR_NAMES)
def test_plain_name_fast_path_agrees_with_validate_name(raw: str) -> None:
    """The parser's fast test says yes exactly for valid names already in normal form."""
    try:
        valid_and_normal = validate_name(raw) == raw
    except InvalidName:
        valid_and_normal = False
    assert is_plain_name(raw) == valid_and_normal


_ZONES = st.sampled_from(
    [
        "internal",
        "fleet.internal",
        "ec2.internal",
        "x.ec2.internal",
        "nal",
        "compute.internal",
        "corp.example",
        "2.internal",
        "ernal",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    name=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)
    | st.sampled_from(
        [
            *("ec2", "x.ec2", "xec2", "compute", "a.compute", "internal", "x.internal", "fleet"),
            *("ec2.internal", "a.ec2.internal", "er", "2", "ec2.int", "x.corp.example"),
        ]
    ),
    zone=_ZONES,
)
def test_conflict_screen_never_misses_a_conflict(name: str, zone: str) -> None:
    """What the screen lets through, the views check with the two other tests."""
    if (
        zone_conflict(name, zone) is not None
        and len(name) <= longest_name(zone)
        and not shadows_public_name(name)
    ):
        assert name.endswith(conflict_screen(zone))


@given(
    st.lists(
        st.from_regex(r"[a-z0-9](?:[a-z0-9.-]{0,12}[a-z0-9])?", fullmatch=True)
        | st.sampled_from(["github.com", "app", "web.prod", "a.xn--p1ai", "x.svc", "com.web"]),
        max_size=6,
    )
)
def test_the_column_check_agrees_with_the_name_check(names: list[str]) -> None:
    assert any_shadows_public_name(names) == any(map(shadows_public_name, names))
