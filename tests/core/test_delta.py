"""Reloads that rebuild only the changed names: always the same result as a full load.

The fleets here are drawn from small pools of names, instances and addresses so
that the cases where names interact come up often: a name on several instances,
an address two names claim (its PTR goes to the first), names the zone refuses,
a name too long to qualify, instances in other regions or without a public
address. ``MAX_CHANGED_SHARE`` is lifted so every edit goes through the rebuild.
"""

from __future__ import annotations

import dataclasses
import json
from array import array
from collections.abc import Callable
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core import delta
from resolver.core.document import HostEntry, make_document
from resolver.core.pipeline import LoadedZone, ZoneSettings, load_document, with_entries_kept
from resolver.core.views import CrossRegion
from resolver.errors import TagdnsError
from tests.documents import REGION, one_region_document

LONG_NAME = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 57
"""Valid, but with ``.internal`` longer than a name may be: it answers bare only."""
NAMES = ("api", "db.eu", "web", "x.internal", "web.internal", "ec2", LONG_NAME)
"""``web.internal`` is refused (it ends in the zone suffix) and spells ``web``'s
qualified name: its entries changing must leave ``web``'s answers alone."""
REGIONS = (REGION, "eu-west-1")
INSTANCES = tuple(f"i-{n:017x}" for n in range(1, 7))
PRIVATE = tuple(f"10.0.0.{n}" for n in range(1, 9))
PUBLIC = (None, "198.18.0.1", "198.18.0.2")
IPV6 = ("2600:1f18::1", "2600:1f18::2")

hosts = st.builds(
    lambda name, region, instance, private, public, ipv6: HostEntry(
        name, region, instance, region + "a", private, public, tuple(sorted(ipv6))
    ),
    st.sampled_from(NAMES),
    st.sampled_from(REGIONS),
    st.sampled_from(INSTANCES),
    st.sampled_from(PRIVATE),
    st.sampled_from(PUBLIC),
    st.sets(st.sampled_from(IPV6), max_size=2),
)
fleets = st.lists(hosts, max_size=10, unique_by=lambda h: (h.name, h.instance_id))
zone_settings = st.builds(
    ZoneSettings,
    view=st.sampled_from([REGION, "eu-west-1", "public"]),
    cross_region=st.sampled_from(CrossRegion),
    ttl=st.sampled_from([30, 60]),
    authoritative=st.booleans(),
    forwarding=st.booleans(),
    max_shrink=st.just(1.0),
)


def _document(serial: int, fleet: list[HostEntry]) -> bytes:
    return make_document(
        serial=serial,
        generated_at="2026-01-02T03:04:05Z",
        tag_key="dns",
        regions=REGIONS,
        hosts=fleet,
    ).to_bytes()


def _outcome(load: Callable[[], LoadedZone]) -> LoadedZone | str:
    try:
        return load()
    except TagdnsError as exc:
        return f"{type(exc).__name__}: {exc}"


def _reload_both_ways(
    previous: LoadedZone, data: bytes, chosen: ZoneSettings
) -> tuple[LoadedZone | str, LoadedZone | str]:
    """(full load, rebuild from ``previous``) of the same bytes against the same facts."""
    full = _outcome(
        lambda: load_document(data, chosen, previous.facts, keep_records=False),
    )
    with patch.object(delta, "MAX_CHANGED_SHARE", 2.0):  # every entry may change
        rebuilt = _outcome(
            lambda: load_document(
                data, chosen, previous.facts, keep_records=False, previous=previous
            ),
        )
    return full, rebuilt


@st.composite
def edited(draw: st.DrawFn, fleet: list[HostEntry]) -> list[HostEntry]:
    """``fleet`` with some entries dropped and some added: what a publish changes."""
    kept = [host for host in fleet if draw(st.booleans()) or draw(st.booleans())]
    taken = {(host.name, host.instance_id) for host in kept}
    added = draw(st.lists(hosts, max_size=3))
    for host in added:
        if (host.name, host.instance_id) not in taken:
            taken.add((host.name, host.instance_id))
            kept.append(host)
    return kept


@settings(max_examples=400, deadline=None)
@given(chosen=zone_settings, first=fleets, data=st.data())
def test_a_rebuild_equals_a_full_load_step_after_step(
    chosen: ZoneSettings, first: list[HostEntry], data: st.DataObject
) -> None:
    loaded = load_document(_document(1, first), chosen, keep_records=False)
    fleet = first
    for serial in range(2, 5):
        fleet = data.draw(edited(fleet)) if data.draw(st.booleans()) else data.draw(fleets)
        full, rebuilt = _reload_both_ways(loaded, _document(serial, fleet), chosen)
        assert rebuilt == full
        assert isinstance(rebuilt, LoadedZone)
        loaded = rebuilt  # the next step builds on the rebuild


TOKENS = ("},{", '}],"regions":[', '"name":"web"', "\\u0061", " ", '"', "{", "}", "]", ",")


@settings(max_examples=300, deadline=None)
@given(
    old=fleets,
    new=fleets,
    at=st.integers(min_value=0),
    token=st.sampled_from(TOKENS),
    replace=st.integers(min_value=0, max_value=3),
)
def test_hostile_bytes_get_the_full_loads_verdict(
    old: list[HostEntry], new: list[HostEntry], at: int, token: str, replace: int
) -> None:
    """Tokens that could mislead the cut of the entries, put anywhere: the same outcome."""
    chosen = ZoneSettings(view=REGION, max_shrink=1.0)
    previous = load_document(_document(1, old), chosen, keep_records=False)
    text = _document(2, new).decode("ascii")
    at %= len(text)
    mutated = (text[:at] + token + text[at + replace :]).encode("utf-8")
    full, rebuilt = _reload_both_ways(previous, mutated, chosen)
    assert rebuilt == full


def _fleet_document(serial: int, moved: int = -1) -> bytes:
    names = [f"host-{i:03d}" for i in range(200)]

    def address(index: int) -> str:
        return "10.9.9.9" if index == moved else f"10.0.{index // 250}.{index % 250 + 1}"

    return one_region_document(serial, names, address)


def test_a_small_change_is_rebuilt_not_reloaded() -> None:
    chosen = ZoneSettings(view=REGION)
    previous = load_document(_fleet_document(1), chosen, keep_records=False)
    assert previous.reuse is not None
    moved = _fleet_document(2, moved=7)
    full = load_document(moved, chosen, keep_records=False)
    # The full load starts by decoding every entry; a rebuild never does.
    with patch("resolver.core.pipeline.decode_document", side_effect=AssertionError):
        rebuilt = load_document(
            moved, chosen, previous.facts, keep_records=False, previous=previous
        )
    assert rebuilt == full
    assert (rebuilt.rebuilt, full.rebuilt) == (1, None)
    assert rebuilt.zone.lookup(b"\x08host-007\x00\x00\x01\x00\x01") is not None


def test_entries_kept_later_are_what_the_next_load_compares_with() -> None:
    """Deferred, the entries are missing until kept: until then the next load is a full one."""
    chosen = ZoneSettings(view=REGION)
    first = _fleet_document(1)
    deferred = load_document(first, chosen, keep_records=False, keep_entries_later=True)
    assert deferred.reuse is not None and deferred.reuse.entries is None
    moved = _fleet_document(2, moved=7)
    next_in_full = load_document(
        moved, chosen, deferred.facts, keep_records=False, previous=deferred
    )
    assert next_in_full.rebuilt is None
    kept = with_entries_kept(deferred, first)
    assert kept == load_document(first, chosen, keep_records=False)
    assert with_entries_kept(kept, first) is kept
    rebuilt = load_document(
        moved, chosen, kept.facts, keep_records=False, previous=kept, keep_entries_later=True
    )
    assert rebuilt.rebuilt == 1
    assert with_entries_kept(rebuilt, moved) == next_in_full


def _since(loaded: LoadedZone) -> delta.Previous:
    assert loaded.reuse is not None and loaded.reuse.entries is not None
    return delta.Previous(
        loaded.zone,
        loaded.view.omitted,
        loaded.reuse.regions,
        loaded.reuse.entries,
        loaded.reuse.shared_reverse,
    )


def _rebuild(previous: LoadedZone, data: bytes, chosen: ZoneSettings) -> delta.Delta | None:
    return delta.rebuild_changed(
        _since(previous), data, chosen.view, chosen.cross_region, chosen.reply_settings()
    )


def test_which_reloads_rebuild_and_which_load_in_full() -> None:
    chosen = ZoneSettings(view=REGION)
    previous = load_document(_fleet_document(1), chosen, keep_records=False)
    assert _rebuild(previous, _fleet_document(2, moved=7), chosen) is not None
    assert _rebuild(previous, _fleet_document(2), chosen) is not None  # same entries
    # A quarter of the entries or more changed: a full load.
    many = one_region_document(2, [f"other-{i}" for i in range(200)], lambda i: "10.1.1.1")
    assert _rebuild(previous, many, chosen) is None
    # Another layout of the same document (indented JSON): a full load.
    pretty = json.dumps(json.loads(_fleet_document(2, moved=7)), indent=1).encode()
    assert _rebuild(previous, pretty, chosen) is None
    # Authoritative zones depend on every name.
    authoritative = dataclasses.replace(chosen, authoritative=True)
    assert _rebuild(previous, _fleet_document(2, moved=7), authoritative) is None


def test_other_settings_or_regions_load_in_full() -> None:
    chosen = ZoneSettings(view=REGION)
    previous = load_document(_fleet_document(1), chosen, keep_records=False)
    other = dataclasses.replace(chosen, ttl=60)
    loaded = load_document(
        _fleet_document(2, moved=7), other, previous.facts, keep_records=False, previous=previous
    )
    assert loaded == load_document(_fleet_document(2, moved=7), other, keep_records=False)
    data = _fleet_document(2, moved=7).replace(
        b'"regions":["us-east-1"]', b'"regions":["us-east-1","eu-west-1"]'
    )
    assert _rebuild(previous, data, chosen) is None


def test_an_address_two_names_claim_falls_back_to_a_full_load() -> None:
    """The PTR of a shared address goes to the first claimant, which may be a name the
    reload does not rebuild: that reload is a full one, and equal to it."""
    chosen = ZoneSettings(view=REGION)
    names = ["alpha", "beta", "gamma"]
    first = one_region_document(1, names, lambda i: "10.0.0.1" if i < 2 else "10.0.0.3")
    previous = load_document(first, chosen, keep_records=False)
    assert previous.reuse is not None and len(previous.reuse.shared_reverse) == 1
    second = one_region_document(2, names, lambda i: "10.0.0.1" if i == 1 else "10.0.0.3")
    assert _rebuild(previous, second, chosen) is None
    assert load_document(
        second, chosen, previous.facts, keep_records=False, previous=previous
    ) == load_document(second, chosen, keep_records=False)


def test_records_kept_for_hosts_files_mean_a_full_load() -> None:
    chosen = ZoneSettings(view=REGION)
    previous = load_document(_fleet_document(1), chosen)
    assert previous.reuse is None  # nothing is kept for a rebuild that will not happen
    loaded = load_document(_fleet_document(2, moved=7), chosen, previous=previous)
    assert loaded.view.records


PTR_CASES = [
    # Each name=N lives at 10.0.0.N, before and after the reload.
    pytest.param("api=1", "api=1 web=1", id="kept-by-the-first"),
    pytest.param("web=1", "aaa=1 web=1", id="taken-by-a-new-first"),
    pytest.param("api=1 web=2", "api=1", id="owner-gone"),
    pytest.param("api=1 web=2", "api=1 web=3", id="owner-moved"),
    pytest.param("api=1 web=2", "api=2 web=1", id="swapped"),
    pytest.param("api=1", "api=2 zed=1", id="handed-on"),
]


def _hosts_at(spec: str, serial: int) -> bytes:
    pairs = [item.split("=") for item in spec.split()]
    return one_region_document(serial, [n for n, _ in pairs], lambda i: f"10.0.0.{pairs[i][1]}")


@pytest.mark.parametrize(("before", "after"), PTR_CASES)
def test_reverse_names_go_to_their_first_claimant(before: str, after: str) -> None:
    chosen = ZoneSettings(view=REGION, max_shrink=1.0)
    previous = load_document(_hosts_at(before, 1), chosen, keep_records=False)
    data = _hosts_at(after, 2)
    with patch.object(delta, "MAX_CHANGED_SHARE", 2.0):
        assert _rebuild(previous, data, chosen) is not None
    full, rebuilt = _reload_both_ways(previous, data, chosen)
    assert rebuilt == full


def test_a_refused_name_changing_leaves_the_name_it_spells_alone() -> None:
    """``web1.internal`` is refused (it ends in the zone suffix) yet spells ``web1``'s
    qualified name: a rebuild for it once dropped ``web1.internal``'s answers."""
    chosen = ZoneSettings(view=REGION)
    names = ["api", "web1", "web2"]
    previous = load_document(
        one_region_document(1, names, lambda i: f"10.0.0.{i + 1}"), chosen, keep_records=False
    )
    data = one_region_document(2, [*names, "web1.internal"], lambda i: f"10.0.0.{i + 1}")
    assert _rebuild(previous, data, chosen) is not None
    full, rebuilt = _reload_both_ways(previous, data, chosen)
    assert rebuilt == full
    assert isinstance(rebuilt, LoadedZone)
    assert rebuilt.zone.lookup(b"\x04web1\x08internal\x00\x00\x01\x00\x01") is not None


def test_an_entry_listed_twice_is_refused_as_in_a_full_load() -> None:
    chosen = ZoneSettings(view=REGION)
    previous = load_document(_fleet_document(1), chosen, keep_records=False)
    text = _fleet_document(2).decode()
    entry = text[text.index("{", 1) : text.index("}") + 1]
    doubled = text.replace(entry, entry + "," + entry, 1).encode()
    full, rebuilt = _reload_both_ways(previous, doubled, chosen)
    assert isinstance(full, str) and "listed twice" in full
    assert rebuilt == full


def test_a_second_hosts_key_is_refused_both_ways() -> None:
    """Parsers disagree about which of two equal keys counts: neither way of loading
    picks one."""
    chosen = ZoneSettings(view=REGION, max_shrink=1.0)
    previous = load_document(_fleet_document(1), chosen, keep_records=False)
    data = _fleet_document(2).replace(b',"tag_key"', b',"hosts":[],"tag_key"')
    full, rebuilt = _reload_both_ways(previous, data, chosen)
    assert (
        full
        == rebuilt
        == ("DocumentError: document is not valid: an object names the key 'hosts' twice")
    )


def test_the_guards_hold_on_a_rebuild() -> None:
    """An older serial is refused with the same words whichever way the zone would be made."""
    chosen = ZoneSettings(view=REGION)
    previous = load_document(_fleet_document(5), chosen, keep_records=False)
    older = _fleet_document(4, moved=7)
    assert _rebuild(previous, older, chosen) is not None  # the rebuild itself would work
    full, rebuilt = _reload_both_ways(previous, older, chosen)
    assert full == rebuilt == "StaleSerialError: serial 4 is older than the serial 5 in force"


def test_an_entry_naming_itself_twice_is_refused_both_ways() -> None:
    """A rebuild that counted names by their key would pair the name with the wrong
    entry; the entry is refused whichever way the document is loaded."""
    chosen = ZoneSettings(view=REGION)
    previous = load_document(_fleet_document(1), chosen, keep_records=False)
    data = _fleet_document(2, moved=7).replace(
        b'"name":"host-003"', b'"name":"decoy","name":"host-003"', 1
    )
    full, rebuilt = _reload_both_ways(previous, data, chosen)
    assert (
        full
        == rebuilt
        == ("DocumentError: document is not valid: an object names the key 'name' twice")
    )


def test_a_changed_entry_naming_a_field_twice_is_refused_both_ways() -> None:
    """The rebuild decodes only the changed entries, with the same refusal of a key
    named twice as the full load: it cannot accept what the full load refuses."""
    chosen = ZoneSettings(view=REGION)
    previous = load_document(_fleet_document(1), chosen, keep_records=False)
    data = _fleet_document(2, moved=7)
    at = data.index(b'"instance_id":"', data.index(b'"name":"host-007"') - 200)
    data = data[:at] + b'"instance_id":"i-0000000000000dead",' + data[at:]
    full, rebuilt = _reload_both_ways(previous, data, chosen)
    assert (
        full
        == rebuilt
        == ("DocumentError: document is not valid: an object names the key 'instance_id' twice")
    )


def _entries(data: bytes) -> tuple[int, int, array[int]]:
    """Where ``data``'s entries lie, and their hashes as ``keep_entries`` keeps them."""
    start = data.index(b'"hosts":[{') + len(b'"hosts":[{')
    end = data.index(b"}],", start)
    return start, end, delta.keep_entries(data, (start, end)).hashes


@pytest.mark.parametrize(
    ("new", "mostly_new"),
    [
        (_fleet_document(2), False),
        (_fleet_document(2, moved=7), False),
        # 40 of 200 entries moved, every fifth: under half of any sample.
        (
            one_region_document(
                2,
                [f"host-{i:03d}" for i in range(200)],
                lambda i: "10.9.9.9" if i % 5 == 0 else f"10.0.{i // 250}.{i % 250 + 1}",
            ),
            False,
        ),
        (one_region_document(2, [f"other-{i}" for i in range(200)], lambda i: "10.1.1.1"), True),
        (one_region_document(2, [f"host-{i:03d}" for i in range(200)], lambda i: "10.8.8.8"), True),
        (one_region_document(2, ["a", "b", "c"], lambda i: "10.1.1.1"), False),  # too few
    ],
)
def test_a_sample_tells_a_redeployed_fleet_apart(new: bytes, mostly_new: bool) -> None:
    old = _entries(_fleet_document(1))[2]
    start, end, _ = _entries(new)
    assert delta._mostly_new(new, start, end, old) is mostly_new


def test_the_sample_never_decides_when_every_change_may_be_rebuilt() -> None:
    new = one_region_document(2, [f"other-{i}" for i in range(200)], lambda i: "10.1.1.1")
    start, end, _ = _entries(new)
    with patch.object(delta, "MAX_CHANGED_SHARE", 2.0):
        assert not delta._mostly_new(new, start, end, _entries(_fleet_document(1))[2])
