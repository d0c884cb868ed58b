"""The node's own region from instance metadata, through botocore's IMDSv2 client."""

from __future__ import annotations

from botocore.utils import InstanceMetadataRegionFetcher

from resolver.errors import AwsError


def region_from_instance_metadata(timeout: int = 1, attempts: int = 2) -> str:
    """Ask IMDS (token first, as IMDSv2 requires); a clear error off EC2.

    A runtime failure (AwsError, exit 1), not a usage error: ``--view auto`` is valid,
    and on EC2 a metadata service that did not answer may answer the next time.
    """
    fetcher = InstanceMetadataRegionFetcher(timeout=timeout, num_attempts=attempts)
    region = fetcher.retrieve_region()
    if not region:
        raise AwsError(
            "view region 'auto': instance metadata did not answer (not on EC2?); "
            "pass --view REGION or --view public"
        )
    return str(region)
