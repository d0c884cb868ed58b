"""``tagdns status``: a running agent's metrics as a short summary for a person.

The samples come from the agent's Prometheus endpoint, already parsed (name ->
list of (labels, value)); this module only picks and words them.
"""

from __future__ import annotations

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
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


class _View:
    def __init__(self, samples: Samples) -> None:
        self.samples = samples

    def value(self, name: str, **labels: str) -> float | None:
        for sample_labels, value in self.samples.get(name, ()):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return None

    def count(self, name: str, **labels: str) -> int:
        value = self.value(name, **labels)
        return int(value) if value is not None else 0

    def by_label(self, name: str, label: str) -> list[tuple[str, int]]:
        return [
            (labels.get(label, "?"), int(value))
            for labels, value in self.samples.get(name, ())
            if value
        ]

    def info(self, name: str) -> Labels | None:
        entries = self.samples.get(name, ())
        return entries[0][0] if entries else None


def is_tagdns(samples: Samples) -> bool:
    return "tagdns_info" in samples


def serving(samples: Samples) -> bool:
    return "tagdns_serving_serial" in samples


def render_status(samples: Samples, where: str, now: float) -> list[str]:
    """The summary lines for an agent whose metrics are ``samples``, scraped at ``now``."""
    view = _View(samples)
    info = view.info("tagdns_info") or {}
    lines = [f"tagdns agent at {where}"]
    serial = view.value("tagdns_serving_serial")
    if serial is None:
        lines.append(
            f"  serving:    nothing yet (no document accepted), view {info.get('view', '?')}"
        )
    else:
        lines.append(
            f"  serving:    serial {int(serial)}, {view.count('tagdns_names')} names, "
            f"view {info.get('view', '?')}"
        )
    generated = view.value("tagdns_data_generated_timestamp_seconds")
    age = view.value("tagdns_data_age_seconds")
    if generated is not None:
        old = f", {human_duration(age)} old" if age is not None else ""
        lines.append(f"  data:       generated {_utc(generated)}{old}")
    loaded_from = info.get("loaded_from") or "nowhere yet"
    lines.append(f"  source:     {info.get('source', '?')} (data from {loaded_from})")
    last_fetch = view.value("tagdns_last_fetch_success_timestamp_seconds")
    fetched = f"{human_duration(now - last_fetch)} ago" if last_fetch is not None else "never"
    started = view.value("tagdns_fetch_started_timestamp_seconds")
    if started is not None:
        fetched += f" (one under way for {human_duration(now - started)})"
    lines.append(
        f"  last fetch: {fetched}; {view.count('tagdns_source_fetches_total')} fetches, "
        f"{view.count('tagdns_source_not_modified_total')} not modified, "
        f"{view.count('tagdns_reloads_total', result='accepted')} accepted, "
        f"{view.count('tagdns_reloads_total', result='rejected')} rejected, "
        f"{view.count('tagdns_source_errors_total')} failed"
    )
    last_load = view.value("tagdns_last_load_seconds")
    if last_load is not None:
        lines.append(
            f"  last load:  {last_load:.3f} s; {view.count('tagdns_rebuilds_total')} of "
            f"{view.count('tagdns_reloads_total', result='accepted')} accepted documents "
            "rebuilt only their changed names"
        )
    error = view.info("tagdns_last_error_info")
    lines.append(f"  last error: {error.get('error', '?') if error else 'none'}")
    files = view.info("tagdns_files_error_info")
    if files:
        lines.append(f"  files:      {files.get('error', '?')}")
    udp = view.count("tagdns_queries_total", transport="udp")
    tcp = view.count("tagdns_queries_total", transport="tcp")
    lines.append(
        f"  queries:    {udp + tcp} (UDP {udp}, TCP {tcp}): "
        f"owned {view.count('tagdns_answers_total', source='owned')}, "
        f"cached {view.count('tagdns_answers_total', source='cached')}, "
        f"forwarded {view.count('tagdns_answers_total', source='forwarded')}"
    )
    types = sorted(view.by_label("tagdns_query_types_total", "type"), key=lambda t: -t[1])
    if types:
        shown = ", ".join(f"{name} {total}" for name, total in types[:_TOP_TYPES])
        more = f" and {len(types) - _TOP_TYPES} more" if len(types) > _TOP_TYPES else ""
        lines.append(f"  types:      {shown}{more}")
    rcodes = sorted(view.by_label("tagdns_responses_total", "rcode"), key=lambda t: -t[1])
    if rcodes:
        lines.append("  replies:    " + ", ".join(f"{name} {total}" for name, total in rcodes))
    lines += _upstream_lines(view)
    return lines


def _upstream_lines(view: _View) -> list[str]:
    if "tagdns_upstream_errors_total" not in view.samples:
        return ["  upstream:   none (names not owned are refused)"]
    failing = view.by_label("tagdns_upstream_errors_total", "upstream")
    total = sum(count for _, count in failing)
    detail = f" ({', '.join(f'{u} {n}' for u, n in failing)})" if failing else ""
    timeouts = view.count("tagdns_upstream_timeouts_total")
    lines = [
        f"  upstream:   {total} errors{detail}, {timeouts} timeouts, "
        f"{view.count('tagdns_forward_servfail_total')} SERVFAIL to clients"
    ]
    silent = view.by_label("tagdns_upstream_timeouts_in_a_row", "upstream")
    if silent:
        lines.append(
            "  asked last: " + ", ".join(f"{u} ({n} timeouts in a row)" for u, n in silent)
        )
    return lines
