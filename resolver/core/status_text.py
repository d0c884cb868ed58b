"""``tagdns status``: a running agent's metrics as a short summary for a person.

The samples come from the agent's Prometheus endpoint, already parsed (name ->
list of (labels, value)); this module only picks and words them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

Labels = Mapping[str, str]
Samples = Mapping[str, Sequence[tuple[Labels, float]]]

_TOP_TYPES = 6


def human_duration(seconds: float) -> str:
    """``42 s``, ``5 min 2 s``, ``3 h 4 min``, ``2 d 5 h`` (negative: clocks disagree, 0 s)."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _utc(timestamp: float) -> str:
    """The time in UTC; "unknown" for one past what the C library can show (year 10^9)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return UNKNOWN


UNKNOWN = "unknown"
_LARGEST = float(2**63)
"""No counter, serial, size or timestamp of an agent comes near it; ``time.gmtime``
and ``int`` accept everything up to it."""


def _shown(count: int | None) -> str:
    return UNKNOWN if count is None else str(count)


class _View:
    """The samples, read the way ``render_status`` needs them.

    The endpoint is whatever answers at the address, so a value may be NaN, infinite
    or negative (Prometheus text allows all three). Such a value is recorded in
    ``unusable`` and read as None, shown as "unknown": one odd number must not cost the
    rest of the summary, nor come out as a traceback.
    """

    def __init__(self, samples: Samples) -> None:
        self.samples = samples
        self.unusable: dict[str, float] = {}

    def _usable(self, name: str, value: float, *, negative: bool = False) -> float | None:
        if math.isfinite(value) and (negative or value >= 0) and abs(value) <= _LARGEST:
            return value
        self.unusable.setdefault(name, value)
        return None

    def present(self, name: str) -> bool:
        return bool(self.samples.get(name))

    def value(self, name: str, *, negative: bool = False, **labels: str) -> float | None:
        """The sample's value; None when there is none or it cannot be one (``unusable``).
        ``negative`` allows values below zero (an age, when clocks disagree)."""
        for sample_labels, value in self.samples.get(name, ()):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return self._usable(name, value, negative=negative)
        return None

    def count(self, name: str, **labels: str) -> int | None:
        """A counter: 0 when absent, None when its value cannot be a count."""
        for sample_labels, value in self.samples.get(name, ()):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                usable = self._usable(name, value)
                return None if usable is None else int(usable)
        return 0

    def by_label(self, name: str, label: str) -> list[tuple[str, int | None]]:
        found: list[tuple[str, int | None]] = []
        for labels, value in self.samples.get(name, ()):
            usable = self._usable(name, value)
            if usable != 0:
                found.append((labels.get(label, "?"), None if usable is None else int(usable)))
        return found

    def info(self, name: str) -> Labels | None:
        entries = self.samples.get(name, ())
        return entries[0][0] if entries else None


def is_tagdns(samples: Samples) -> bool:
    return "tagdns_info" in samples


def serving(samples: Samples) -> bool:
    """Whether the agent serves a document: its serial is there and is a number."""
    view = _View(samples)
    return view.value("tagdns_serving_serial") is not None


def render_status(samples: Samples, where: str, now: float) -> list[str]:
    """The summary lines for an agent whose metrics are ``samples``, scraped at ``now``."""
    view = _View(samples)
    info = view.info("tagdns_info") or {}
    lines = [f"tagdns agent at {where}"]
    serial = view.value("tagdns_serving_serial")
    if not view.present("tagdns_serving_serial"):
        lines.append(
            f"  serving:    nothing yet (no document accepted), view {info.get('view', '?')}"
        )
    else:
        lines.append(
            f"  serving:    serial {_shown(None if serial is None else int(serial))}, "
            f"{_shown(view.count('tagdns_names'))} names, view {info.get('view', '?')}"
        )
    generated = view.value("tagdns_data_generated_timestamp_seconds")
    age = view.value("tagdns_data_age_seconds", negative=True)
    if view.present("tagdns_data_generated_timestamp_seconds"):
        when = UNKNOWN if generated is None else _utc(generated)
        old = ""
        if view.present("tagdns_data_age_seconds"):
            old = f", {UNKNOWN if age is None else human_duration(age)} old"
        lines.append(f"  data:       generated {when}{old}")
    loaded_from = info.get("loaded_from") or "nowhere yet"
    lines.append(f"  source:     {info.get('source', '?')} (data from {loaded_from})")
    lines.append(f"  last fetch: {_fetched(view, now)}; {_fetch_counts(view)}")
    last_load = view.value("tagdns_last_load_seconds")
    if view.present("tagdns_last_load_seconds"):
        took = UNKNOWN if last_load is None else f"{last_load:.3f}"
        lines.append(
            f"  last load:  {took} s; {_shown(view.count('tagdns_rebuilds_total'))} of "
            f"{_shown(view.count('tagdns_reloads_total', result='accepted'))} accepted "
            "documents rebuilt only their changed names"
        )
    error = view.info("tagdns_last_error_info")
    lines.append(f"  last error: {error.get('error', '?') if error else 'none'}")
    files = view.info("tagdns_files_error_info")
    if files:
        lines.append(f"  files:      {files.get('error', '?')}")
    udp = view.count("tagdns_queries_total", transport="udp")
    tcp = view.count("tagdns_queries_total", transport="tcp")
    total = None if udp is None or tcp is None else udp + tcp
    lines.append(
        f"  queries:    {_shown(total)} (UDP {_shown(udp)}, TCP {_shown(tcp)}): "
        f"owned {_shown(view.count('tagdns_answers_total', source='owned'))}, "
        f"cached {_shown(view.count('tagdns_answers_total', source='cached'))}, "
        f"forwarded {_shown(view.count('tagdns_answers_total', source='forwarded'))}"
    )
    types = _largest_first(view.by_label("tagdns_query_types_total", "type"))
    if types:
        shown = ", ".join(f"{name} {_shown(total)}" for name, total in types[:_TOP_TYPES])
        more = f" and {len(types) - _TOP_TYPES} more" if len(types) > _TOP_TYPES else ""
        lines.append(f"  types:      {shown}{more}")
    rcodes = _largest_first(view.by_label("tagdns_responses_total", "rcode"))
    if rcodes:
        lines.append(
            "  replies:    " + ", ".join(f"{name} {_shown(total)}" for name, total in rcodes)
        )
    lines += _upstream_lines(view)
    if view.unusable:
        odd = ", ".join(f"{name} {value:g}" for name, value in view.unusable.items())
        lines.append(f"  unusable:   {odd} (shown as unknown)")
    return lines


def _largest_first(counts: list[tuple[str, int | None]]) -> list[tuple[str, int | None]]:
    return sorted(counts, key=lambda t: -1 if t[1] is None else -t[1])


def _fetched(view: _View, now: float) -> str:
    last_fetch = view.value("tagdns_last_fetch_success_timestamp_seconds")
    if last_fetch is not None:
        fetched = f"{human_duration(now - last_fetch)} ago"
    elif view.present("tagdns_last_fetch_success_timestamp_seconds"):
        fetched = UNKNOWN
    else:
        fetched = "never"
    started = view.value("tagdns_fetch_started_timestamp_seconds")
    if view.present("tagdns_fetch_started_timestamp_seconds"):
        under_way = UNKNOWN if started is None else human_duration(now - started)
        fetched += f" (one under way for {under_way})"
    return fetched


def _fetch_counts(view: _View) -> str:
    return (
        f"{_shown(view.count('tagdns_source_fetches_total'))} fetches "
        f"({_shown(view.count('tagdns_source_not_modified_total'))} not modified, "
        f"{_shown(view.count('tagdns_source_errors_total'))} failed); documents "
        f"{_shown(view.count('tagdns_reloads_total', result='accepted'))} accepted, "
        f"{_shown(view.count('tagdns_reloads_total', result='rejected'))} rejected"
    )


def _upstream_lines(view: _View) -> list[str]:
    if "tagdns_upstream_errors_total" not in view.samples:
        return ["  upstream:   none (names not owned are refused)"]
    failing = view.by_label("tagdns_upstream_errors_total", "upstream")
    counts = [count for _, count in failing]
    total = None if None in counts else sum(count or 0 for count in counts)
    detail = f" ({', '.join(f'{u} {_shown(n)}' for u, n in failing)})" if failing else ""
    timeouts = view.count("tagdns_upstream_timeouts_total")
    overflow = view.count("tagdns_forward_overflow_total")
    dropped = f", {_shown(overflow)} dropped (too many waiting)" if overflow != 0 else ""
    lines = [
        f"  upstream:   {_shown(total)} errors{detail}, {_shown(timeouts)} timeouts, "
        f"{_shown(view.count('tagdns_forward_servfail_total'))} SERVFAIL to clients{dropped}"
    ]
    silent = view.by_label("tagdns_upstream_timeouts_in_a_row", "upstream")
    if silent:
        lines.append(
            "  asked last: " + ", ".join(f"{u} ({_shown(n)} timeouts in a row)" for u, n in silent)
        )
    return lines
