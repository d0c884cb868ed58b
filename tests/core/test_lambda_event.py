"""Lambda events: only a JSON-boolean ``dry_run`` by hand; EventBridge events as they come."""

from __future__ import annotations

import pytest

from resolver.core.lambda_event import event_dry_run
from resolver.errors import ConfigError

SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-25T13:45:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/tagdns-publish-schedule"],
    "detail": {},
}
STATE_CHANGE = {
    **SCHEDULED,
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"],
    "detail": {"instance-id": "i-0123456789abcdef0", "state": "running"},
}
TAG_CHANGE = {
    **SCHEDULED,
    "detail-type": "Tag Change on Resource",
    "source": "aws.tag",
    "detail": {
        "changed-tag-keys": ["dns"],
        "service": "ec2",
        "resource-type": "instance",
        "version": 3,
        "tags": {"dns": "web1"},
    },
}


@pytest.mark.parametrize(
    ("event", "dry_run"),
    [
        ({}, False),
        ({"dry_run": True}, True),
        ({"dry_run": False}, False),
        (SCHEDULED, False),
        (STATE_CHANGE, False),
        (TAG_CHANGE, False),
        ({"source": "aws.events", "detail-type": "Scheduled Event"}, False),
        ({**SCHEDULED, "dry_run": True}, True),
    ],
)
def test_known_events(event: object, dry_run: bool) -> None:
    assert event_dry_run(event) is dry_run


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {"dry_run": "true"},
            "event key 'dry_run': expected true or false (a JSON boolean), got 'true'",
        ),
        ({"dry_run": "false"}, "got 'false'"),
        ({"dry_run": 1}, "event key 'dry_run': expected true or false (a JSON boolean), got 1"),
        ({"dry_run": 0}, "got 0"),
        ({"dry_run": None}, "got None"),
        ({"dry_run": [True]}, "got [True]"),
        ({**SCHEDULED, "dry_run": "yes"}, "got 'yes'"),
        ({"dryrun": True}, "event key 'dryrun': not a known key (did you mean 'dry_run'?)"),
        ({"DryRun": True}, "event key 'DryRun': not a known key"),
        ({"dry-run": True}, "(did you mean 'dry_run'?)"),
        ({"dry_run": True, "regions": "eu-west-1"}, "event key 'regions': not a known key;"),
        ({"force": True}, "event key 'force': an event cannot pass the guards; run tagdns publish"),
        # Only half of EventBridge's envelope: typed by hand, so its keys are checked.
        ({"source": "aws.events", "dryrun": True}, "event key 'source': not a known key"),
        ({"detail-type": "Scheduled Event"}, "event key 'detail-type': not a known key"),
        ("dry_run", "event: expected a JSON object such as {} or {'dry_run': true}, got str"),
        ([{"dry_run": True}], "got list [{'dry_run': True}]"),
        (None, "got NoneType None"),
        ({"dry_run": "x" * 500}, "got 'xxxx"),
    ],
)
def test_events_refused_with_one_line(event: object, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        event_dry_run(event)
    message = str(caught.value)
    assert error in message
    assert "\n" not in message
    assert len(message) < 300
