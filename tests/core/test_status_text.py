"""``tagdns status``: the summary of a running agent's metrics."""

from __future__ import annotations

import pytest

from resolver.core.status_text import Samples, human_duration, is_tagdns, render_status, serving

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0 s"),
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (62, "1 min 2 s"),
        (3600, "1 h"),
        (3720, "1 h 2 min"),
        (86400, "1 d"),
        (90000, "1 d 1 h"),
        (400 * 86400, "400 d"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def _samples(**extra: list[tuple[dict[str, str], float]]) -> Samples:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {
        "tagdns_info": [
            (
                {
                    "source": "s3://fleet-config/dns/mapping.json",
                    "view": "us-east-1",
                    "loaded_from": "cache /var/lib/tagdns/mapping.json",
                },
                1.0,
            )
        ],
        "tagdns_serving_serial": [({}, 1764076800.0)],
        "tagdns_names": [({}, 5.0)],
        "tagdns_data_generated_timestamp_seconds": [({}, NOW - 7200)],
        "tagdns_data_age_seconds": [({}, 7200.0)],
        "tagdns_last_fetch_success_timestamp_seconds": [({}, NOW - 12)],
        "tagdns_source_fetches_total": [({}, 40.0)],
        "tagdns_source_not_modified_total": [({}, 38.0)],
        "tagdns_source_errors_total": [({}, 1.0)],
        "tagdns_reloads_total": [({"result": "accepted"}, 3.0), ({"result": "rejected"}, 0.0)],
        "tagdns_rebuilds_total": [({}, 2.0)],
        "tagdns_last_load_seconds": [({}, 0.4125)],
        "tagdns_queries_total": [({"transport": "udp"}, 120.0), ({"transport": "tcp"}, 3.0)],
        "tagdns_query_types_total": [({"type": "A"}, 100.0), ({"type": "AAAA"}, 23.0)],
        "tagdns_responses_total": [({"rcode": "NOERROR"}, 110.0), ({"rcode": "NXDOMAIN"}, 13.0)],
        "tagdns_answers_total": [
            ({"source": "owned"}, 90.0),
            ({"source": "cached"}, 10.0),
            ({"source": "forwarded"}, 23.0),
        ],
        "tagdns_upstream_errors_total": [({"upstream": "10.0.0.2:53"}, 2.0)],
        "tagdns_upstream_timeouts_total": [({}, 1.0)],
        "tagdns_forward_servfail_total": [({}, 0.0)],
    }
    samples.update(extra)
    return samples


def test_render_serving_agent() -> None:
    lines = render_status(_samples(), "127.0.0.1:9153", NOW)
    assert lines == [
        "tagdns agent at 127.0.0.1:9153",
        "  serving:    serial 1764076800, 5 names, view us-east-1",
        "  data:       generated 2027-01-15 06:00:00 UTC, 2 h old",
        "  source:     s3://fleet-config/dns/mapping.json "
        "(data from cache /var/lib/tagdns/mapping.json)",
        "  last fetch: 12 s ago; 40 fetches (38 not modified, 1 failed); documents 3 accepted, "
        "0 rejected",
        "  last load:  0.412 s; 2 of 3 accepted documents rebuilt only their changed names",
        "  last error: none",
        "  queries:    123 (UDP 120, TCP 3): owned 90, cached 10, forwarded 23",
        "  types:      A 100, AAAA 23",
        "  replies:    NOERROR 110, NXDOMAIN 13",
        "  upstream:   2 errors (10.0.0.2:53 2), 1 timeouts, 0 SERVFAIL to clients",
    ]
    assert is_tagdns(_samples())
    assert serving(_samples())


def test_render_questions_dropped_for_too_many_waiting() -> None:
    """Queries dropped unanswered were nowhere in status: counted queries exceeded the
    replies with no line saying where the rest went."""
    samples = _samples(tagdns_forward_overflow_total=[({}, 7518.0)])
    assert render_status(samples, "127.0.0.1:9153", NOW)[-1] == (
        "  upstream:   2 errors (10.0.0.2:53 2), 1 timeouts, 0 SERVFAIL to clients, "
        "7518 dropped (too many waiting)"
    )


def test_render_an_upstream_that_went_silent() -> None:
    samples = _samples(
        tagdns_upstream_timeouts_in_a_row=[
            ({"upstream": "10.0.0.2:53"}, 3.0),
            ({"upstream": "10.0.0.3:53"}, 0.0),
        ]
    )
    lines = render_status(samples, "127.0.0.1:9153", NOW)
    assert lines[-1] == "  asked last: 10.0.0.2:53 (3 timeouts in a row)"


def test_render_agent_without_data_and_with_an_error() -> None:
    samples = dict(_samples())
    for name in (
        "tagdns_serving_serial",
        "tagdns_data_generated_timestamp_seconds",
        "tagdns_data_age_seconds",
        "tagdns_last_fetch_success_timestamp_seconds",
        "tagdns_upstream_errors_total",
        "tagdns_last_load_seconds",  # only once a document was accepted
    ):
        del samples[name]
    samples["tagdns_last_error_info"] = [({"error": "s3://x/y: access denied"}, 1.0)]
    samples["tagdns_info"] = [({"source": "s3://x/y", "view": "eu-west-1", "loaded_from": ""}, 1)]
    lines = render_status(samples, "[::1]:9153", NOW)
    assert lines[1] == "  serving:    nothing yet (no document accepted), view eu-west-1"
    assert lines[2] == "  source:     s3://x/y (data from nowhere yet)"
    assert lines[3].startswith("  last fetch: never;")
    assert lines[4] == "  last error: s3://x/y: access denied"
    assert lines[-1] == "  upstream:   none (names not owned are refused)"
    assert not serving(samples)


def test_a_files_error_is_shown_after_the_last_error() -> None:
    samples = dict(_samples())
    samples["tagdns_files_error_info"] = [({"error": "/etc/hosts: line 4: no BEGIN"}, 1.0)]
    lines = render_status(samples, "[::1]:9153", NOW)
    at = lines.index("  last error: none")
    assert lines[at + 1] == "  files:      /etc/hosts: line 4: no BEGIN"
    assert "  files:" not in "\n".join(render_status(_samples(), "[::1]:9153", NOW))


def test_a_fetch_under_way_is_shown_on_the_last_fetch_line() -> None:
    samples = dict(_samples())
    del samples["tagdns_last_fetch_success_timestamp_seconds"]
    samples["tagdns_fetch_started_timestamp_seconds"] = [({}, NOW - 75)]
    [line] = [x for x in render_status(samples, "[::1]:9153", NOW) if "last fetch" in x]
    assert line.startswith("  last fetch: never (one under way for 1 min 15 s);")


def test_many_types_are_cut_short() -> None:
    types = [({"type": f"TYPE{n}"}, float(100 - n)) for n in range(10)]
    lines = render_status(_samples(tagdns_query_types_total=types), "x", NOW)
    assert (
        "  types:      TYPE0 100, TYPE1 99, TYPE2 98, TYPE3 97, TYPE4 96, TYPE5 95 and 4 more"
        in (lines)
    )


def test_not_tagdns() -> None:
    assert not is_tagdns({"process_cpu_seconds_total": [({}, 1.0)]})


NUMERIC_METRICS = [
    ("tagdns_serving_serial", {}),
    ("tagdns_names", {}),
    ("tagdns_data_generated_timestamp_seconds", {}),
    ("tagdns_data_age_seconds", {}),
    ("tagdns_last_fetch_success_timestamp_seconds", {}),
    ("tagdns_fetch_started_timestamp_seconds", {}),
    ("tagdns_source_fetches_total", {}),
    ("tagdns_source_not_modified_total", {}),
    ("tagdns_source_errors_total", {}),
    ("tagdns_reloads_total", {"result": "accepted"}),
    ("tagdns_rebuilds_total", {}),
    ("tagdns_last_load_seconds", {}),
    ("tagdns_queries_total", {"transport": "udp"}),
    ("tagdns_query_types_total", {"type": "A"}),
    ("tagdns_responses_total", {"rcode": "NOERROR"}),
    ("tagdns_answers_total", {"source": "owned"}),
    ("tagdns_upstream_errors_total", {"upstream": "10.0.0.2:53"}),
    ("tagdns_upstream_timeouts_total", {}),
    ("tagdns_forward_servfail_total", {}),
    ("tagdns_upstream_timeouts_in_a_row", {"upstream": "10.0.0.2:53"}),
]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -1.0, 1e300])
@pytest.mark.parametrize(
    ("name", "labels"), NUMERIC_METRICS, ids=[name for name, _ in NUMERIC_METRICS]
)
def test_a_value_that_cannot_be_one_is_shown_as_unknown(
    name: str, labels: dict[str, str], value: float
) -> None:
    """A foreign or broken endpoint: every line still comes out, never a traceback."""
    samples = dict(_samples())
    samples[name] = [(labels, value)]
    lines = render_status(samples, "127.0.0.1:9153", NOW)
    assert lines[0] == "tagdns agent at 127.0.0.1:9153"
    assert all("\n" not in line for line in lines)
    assert not any("nan" in line.lower() or "inf " in line for line in lines[:-1])
    if value == -1.0 and name == "tagdns_data_age_seconds":
        return  # a publisher's clock ahead of the node's: "0 s old"
    assert "unknown" in "\n".join(lines), lines
    assert lines[-1] == f"  unusable:   {name} {value:g} (shown as unknown)"


def test_a_serial_that_is_not_a_number_is_not_serving() -> None:
    samples = dict(_samples())
    samples["tagdns_serving_serial"] = [({}, float("nan"))]
    lines = render_status(samples, "x", NOW)
    assert lines[1] == "  serving:    serial unknown, 5 names, view us-east-1"
    assert not serving(samples)


def test_a_negative_data_age_is_a_clock_ahead_not_an_error() -> None:
    samples = dict(_samples())
    samples["tagdns_data_age_seconds"] = [({}, -30.0)]
    lines = render_status(samples, "x", NOW)
    assert lines[2].endswith(", 0 s old")
    assert not any(line.startswith("  unusable:") for line in lines)


def test_a_timestamp_past_what_the_c_library_shows_is_unknown() -> None:
    samples = dict(_samples())
    samples["tagdns_data_generated_timestamp_seconds"] = [({}, 1e18)]
    lines = render_status(samples, "x", NOW)
    assert lines[2] == "  data:       generated unknown, 2 h old"
