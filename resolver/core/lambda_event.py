"""What a Lambda invocation event may ask of the publisher: a dry run, and nothing else.

The function is triggered by EventBridge (the schedule, EC2 instance state
changes, dns tag changes: conf/publisher-eventbridge.json) and by hand, with a
test event typed in the Lambda console or given to ``aws lambda invoke``. An
event typed by hand is where mistakes happen: ``{"dry_run": "true"}`` (a string),
``{"dry_run": 1}`` or ``{"dryrun": true}`` read as "not a dry run" would publish
for real when someone asked only to look. So each is an error naming the value,
raised before anything is read or written.

The rule:

- An event carrying both ``source`` and ``detail-type`` is an EventBridge event.
  Its other top-level keys (``id``, ``time``, ``region``, ``resources``,
  ``detail``, ...) are EventBridge's and are not ours to check; it publishes.
- Any other event is typed by someone: its only known key is ``dry_run``, and
  every other key is an error (``force`` included: passing the guards is an
  operator's decision, made with ``tagdns publish --force`` from a shell).
- ``dry_run``, wherever it appears, must be a JSON boolean.

Pure: the handler passes the event it was given.
"""

from __future__ import annotations

import difflib

from resolver.errors import ConfigError

DRY_RUN = "dry_run"
KNOWN_KEYS = (DRY_RUN,)
EVENTBRIDGE_KEYS = ("source", "detail-type")
_SHOWN_MAX = 60


def event_dry_run(event: object) -> bool:
    """Whether ``event`` asks for a dry run; ConfigError (one line, naming the value) when
    the event is not one the handler knows, so a mistyped test event never publishes."""
    if not isinstance(event, dict):
        raise ConfigError(
            f"event: expected a JSON object such as {{}} or {{{DRY_RUN!r}: true}}, "
            f"got {type(event).__name__} {_shown(event)}"
        )
    if not all(key in event for key in EVENTBRIDGE_KEYS):
        for key in event:
            if key not in KNOWN_KEYS:
                raise ConfigError(f"event key {_shown(key)}: {_unknown(key)}")
    if DRY_RUN not in event:
        return False
    value = event[DRY_RUN]
    if not isinstance(value, bool):
        raise ConfigError(
            f"event key {DRY_RUN!r}: expected true or false (a JSON boolean), got {_shown(value)}"
        )
    return value


def _unknown(key: object) -> str:
    if key == "force":
        return (
            "an event cannot pass the guards; run tagdns publish --force from a shell "
            "to publish anyway"
        )
    known = ", ".join(repr(k) for k in KNOWN_KEYS)
    close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"not a known key{hint}; an event typed by hand may hold only {known} "
        "(true or false), and an EventBridge event carries 'source' and 'detail-type'"
    )


def _shown(value: object) -> str:
    """``repr``, cut short: an event is arbitrary JSON and the error must stay one line."""
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."
