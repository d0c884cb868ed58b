"""The probing behind ``tagdns check``: bind attempts, /proc, files on disk.

Decisions and wording live in resolver.core.preflight; this module only asks
the system. Nothing here changes the system: a probe socket is closed at once,
and the write test of the cache directory removes its temporary file.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from resolver.core.endpoints import Endpoint
from resolver.core.preflight import (
    Holder,
    ProcSocket,
    blocking_inodes,
    parse_cmdline,
    parse_proc_net,
)

PROC = Path("/proc")
RESOLVED_CONF = Path("/etc/systemd/resolved.conf")
RESOLVED_DROP_IN_DIRS = (
    Path("/etc/systemd/resolved.conf.d"),
    Path("/run/systemd/resolved.conf.d"),
    Path("/usr/local/lib/systemd/resolved.conf.d"),
    Path("/usr/lib/systemd/resolved.conf.d"),
)


def try_bind(endpoint: Endpoint) -> dict[str, tuple[int, str] | None]:
    """Bind UDP and TCP on ``endpoint`` as the agent would; errno and text per protocol."""
    family = socket.AF_INET6 if endpoint.family_version == 6 else socket.AF_INET
    results: dict[str, tuple[int, str] | None] = {}
    for name, kind in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)):
        try:
            with socket.socket(family, kind) as sock:
                if kind == socket.SOCK_STREAM:
                    # As asyncio's create_server: TIME_WAIT leftovers do not count as "in use".
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((endpoint.host, endpoint.port))
                if kind == socket.SOCK_STREAM:
                    sock.listen(1)
            results[name] = None
        except OSError as exc:
            results[name] = (exc.errno or 0, exc.strerror or str(exc))
    return results


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def proc_sockets(*, tcp: bool, proc: Path = PROC) -> list[ProcSocket]:
    base = "tcp" if tcp else "udp"
    byteorder: Literal["little", "big"] = "little" if sys.byteorder == "little" else "big"
    sockets: list[ProcSocket] = []
    for name in (base, base + "6"):
        sockets.extend(parse_proc_net(_read(proc / "net" / name), byteorder))
    return sockets


def socket_owners(inodes: Sequence[int], proc: Path = PROC) -> list[Holder]:
    """The processes with one of ``inodes`` open (readable only for our own, unless root)."""
    if not inodes:
        return []
    targets = {f"socket:[{inode}]" for inode in inodes}
    holders: list[Holder] = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                link = os.readlink(descriptor)
            except OSError:
                continue
            if link in targets:
                comm = _read(entry / "comm").strip() or "?"
                try:
                    cmdline = parse_cmdline((entry / "cmdline").read_bytes())
                except OSError:
                    cmdline = ()
                holders.append(Holder(int(entry.name), comm, cmdline))
                break
    return sorted(holders, key=lambda h: h.pid)


def port_holders(endpoint: Endpoint, *, protocols: Sequence[str] = ("udp", "tcp")) -> list[Holder]:
    """Who holds ``endpoint`` (for the protocols given), as far as /proc tells."""
    inodes: list[int] = []
    for protocol in protocols:
        tcp = protocol == "tcp"
        inodes.extend(blocking_inodes(proc_sockets(tcp=tcp), endpoint, tcp=tcp))
    return socket_owners(inodes)


def read_resolved_configs() -> list[str]:
    """resolved.conf, then its drop-ins by file name (a name in /etc hides the same in /usr)."""
    texts = [_read(RESOLVED_CONF)]
    chosen: dict[str, Path] = {}
    for directory in RESOLVED_DROP_IN_DIRS:
        with contextlib.suppress(OSError):
            for path in directory.glob("*.conf"):
                chosen.setdefault(path.name, path)
    texts.extend(_read(chosen[name]) for name in sorted(chosen))
    return [text for text in texts if text]


def directory_problem(path: Path) -> str | None:
    """Why the agent could not write ``path`` (atomically: temp file, rename); None if it can."""
    directory = path.parent
    existing = directory
    while not existing.exists():
        if existing.parent == existing:
            return f"no existing directory above {directory}"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if existing != directory:
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"{directory} does not exist and {existing} is not writable to create it"
        return None
    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=".tagdns-check-")
    except OSError as exc:
        return f"{directory} is not writable: {exc.strerror or exc}"
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None
