"""sd_notify(3) without libsystemd: one AF_UNIX datagram per state change.

systemd passes ``NOTIFY_SOCKET`` to a ``Type=notify`` service: a filesystem path,
or an abstract socket name written with a leading ``@``. Messages are
newline-separated ``KEY=VALUE`` lines (``READY=1``, ``STATUS=...``,
``STOPPING=1``). Outside systemd there is no variable and every call is a no-op.
A failing send is logged once and never stops the agent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("tagdns.systemd")

ENVIRONMENT_VARIABLE = "NOTIFY_SOCKET"


def socket_address(value: str) -> str | None:
    """The address to send to: a path, or an abstract name (``@`` becomes NUL); None if unusable."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class SystemdNotifier:
    """Sends state changes to systemd; ``enabled`` is False when not run by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        value = (os.environ if environ is None else environ).get(ENVIRONMENT_VARIABLE, "")
        self.address = socket_address(value) if value else None
        if value and self.address is None:
            log.warning(
                "ignoring %s=%r: not a path or an @abstract name", ENVIRONMENT_VARIABLE, value
            )
        self._failed = False
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` fields (keys upper-cased); True when systemd got them."""
        if self.address is None:
            return False
        message = "\n".join(
            f"{key.upper()}={str(value).replace(chr(10), ' ')}" for key, value in fields.items()
        )
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode("utf-8", errors="replace"))
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> bool:
        sent = self.notify(READY=1, STATUS=status)
        self._last_status = status if sent else None
        return sent

    def status(self, status: str) -> bool:
        """Send STATUS= unless it says what the last one said (True then too)."""
        if status == self._last_status:
            return True
        sent = self.notify(STATUS=status)
        self._last_status = status if sent else None
        return sent

    def stopping(self) -> bool:
        return self.notify(STOPPING=1, STATUS="stopping")
