"""Small mapping documents for agent tests: one region, private addresses only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from resolver.core.document import HostEntry, make_document

REGION = "us-east-1"
GENERATED_AT = "2026-01-02T03:04:05Z"


def one_region_document(
    serial: int,
    names: Sequence[str],
    address: Callable[[int], str],
    *,
    generated_at: str = GENERATED_AT,
) -> bytes:
    """Canonical bytes; name i lives on instance i + 1 at ``address(i)``."""
    hosts = [
        HostEntry(
            name=name,
            region=REGION,
            instance_id=f"i-{index + 1:017x}",
            az=f"{REGION}a",
            private_ipv4=address(index),
            public_ipv4=None,
        )
        for index, name in enumerate(names)
    ]
    return make_document(
        serial=serial, generated_at=generated_at, tag_key="dns", regions=[REGION], hosts=hosts
    ).to_bytes()
