"""The node's own region from instance metadata, through botocore's IMDSv2 client."""

from __future__ import annotations

from botocore.utils import InstanceMetadataRegionFetcher

from resolver.errors import ConfigError


def region_from_instance_metadata(timeout: int = 1, attempts: int = 2) -> str:
    """Ask IMDS (token first, as IMDSv2 requires); a clear error off EC2."""
    fetcher = InstanceMetadataRegionFetcher(timeout=timeout, num_attempts=attempts)
    region = fetcher.retrieve_region()
    if not region:
        raise ConfigError(
            "view region 'auto': instance metadata did not answer (not on EC2?); "
            "pass --view REGION or --view public"
        )
    return str(region)
