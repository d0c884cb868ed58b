"""The objects one document publishes: keys, bytes, content types and write order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core.document import HostEntry, MappingDocument, make_document, parse_document
from resolver.core.hosts_text import render_hosts
from resolver.core.publication import (
    HOSTS_TYPE,
    JSON_TYPE,
    build_publication,
    hosts_key,
    mapping_key,
    object_key,
)
from resolver.core.views import public_view, region_view
from tests.core.strategies import documents

DOCUMENT = make_document(
    serial=7,
    generated_at="2024-05-01T12:00:00Z",
    tag_key="dns",
    regions=["us-east-1", "eu-west-1", "ap-south-1"],
    hosts=[
        HostEntry("web1", "us-east-1", "i-0000000000000001", "us-east-1a", "10.0.0.1", "3.0.0.1"),
        HostEntry("db", "eu-west-1", "i-0000000000000002", "eu-west-1b", "10.1.0.2", None),
    ],
)


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("dns", "dns/mapping.json"),
        ("dns/", "dns/mapping.json"),
        ("a/b", "a/b/mapping.json"),
        ("", "mapping.json"),
    ],
)
def test_keys_join_the_prefix_once(prefix: str, key: str) -> None:
    assert mapping_key(prefix) == key
    assert hosts_key(prefix, "public") == object_key(prefix, "hosts/public.hosts")


def test_every_scanned_region_and_public_get_a_hosts_file_and_the_mapping_comes_last() -> None:
    publication = build_publication(DOCUMENT, "dns", "internal")

    assert [o.key for o in publication.objects] == [
        "dns/hosts/ap-south-1.hosts",  # scanned, empty: still a file, so nodes there get one
        "dns/hosts/eu-west-1.hosts",
        "dns/hosts/us-east-1.hosts",
        "dns/hosts/public.hosts",
        "dns/mapping.json",
    ]
    assert publication.mapping.body == DOCUMENT.to_bytes()
    assert publication.mapping.content_type == JSON_TYPE
    assert {o.content_type for o in publication.hosts_files} == {HOSTS_TYPE}
    us = publication.objects[2].body.decode("ascii")
    assert us == render_hosts(region_view(DOCUMENT, "us-east-1", "internal"))
    assert "10.0.0.1 web1.internal web1\n" in us
    assert "db" not in us  # remote, no public address
    public = publication.objects[3].body.decode("ascii")
    assert public == render_hosts(public_view(DOCUMENT, "internal"))


def test_omissions_are_reported_per_view() -> None:
    publication = build_publication(DOCUMENT, "dns", "internal")

    omitted = {
        label: [(o.name, o.instance_id) for o in items] for label, items in publication.omitted
    }
    assert omitted == {
        "ap-south-1": [("db", "i-0000000000000002")],
        "us-east-1": [("db", "i-0000000000000002")],
        "public": [("db", "i-0000000000000002")],
    }


def test_the_zone_only_changes_the_hosts_files() -> None:
    internal = build_publication(DOCUMENT, "dns", "internal")
    fleet = build_publication(DOCUMENT, "dns", "fleet.example")

    assert internal.mapping == fleet.mapping
    assert b"web1.fleet.example web1" in fleet.objects[2].body


@given(documents(), st.sampled_from(["internal", "corp.example"]))
def test_any_valid_document_publishes_ascii_hosts_and_its_own_bytes(
    doc: MappingDocument, zone: str
) -> None:
    publication = build_publication(doc, "p", zone)
    assert len(publication.hosts_files) == len(doc.regions) + 1
    assert parse_document(publication.mapping.body) == doc
    for obj in publication.hosts_files:
        text = obj.body.decode("ascii")
        assert text.endswith("\n")
        assert all(line.startswith("#") or line.count(" ") in (1, 2) for line in text.splitlines())
