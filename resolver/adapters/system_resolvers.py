"""What the system says about its resolvers: resolv.conf files and whether this is EC2."""

from __future__ import annotations

from pathlib import Path

RESOLV_CONF_PATHS = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))


def read_resolv_confs(paths: tuple[Path, ...] = RESOLV_CONF_PATHS) -> list[str]:
    """The text of each resolv.conf that exists and is readable, in order."""
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    return texts


def running_on_ec2() -> bool:
    """True when instance metadata answers (IMDSv2, through botocore)."""
    from botocore.utils import InstanceMetadataRegionFetcher  # noqa: PLC0415

    return bool(InstanceMetadataRegionFetcher(timeout=1, num_attempts=1).retrieve_region())
