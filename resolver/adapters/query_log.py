"""The query log: one line per reply sent, when the operator turns it on."""

from __future__ import annotations

import logging

from resolver.core.endpoints import Endpoint
from resolver.core.query_stats import describe_reply

query_log = logging.getLogger("tagdns.query")

Address = tuple[str, int] | tuple[str, int, int, int]
"""A client address as the socket module writes it (IPv6 adds flow info and scope)."""


def log_reply(client: Address | None, transport: str, reply: bytes) -> None:
    """One query-log line: client, transport, name, type, rcode."""
    name, qtype, rcode = describe_reply(reply)
    peer = str(Endpoint(client[0], client[1])) if client else "?"
    query_log.info(
        "query %s %s %s %s %s",
        peer,
        transport,
        name,
        qtype,
        rcode,
        extra={
            "fields": {
                "client": peer,
                "transport": transport,
                "name": name,
                "type": qtype,
                "rcode": rcode,
            }
        },
    )
