"""Publisher settings typed as text, checked one by one so the error names where they
were typed: a flag (``--regions``) or an environment variable (``TAGDNS_REGIONS``).

``config.validate_config`` checks the merged configuration too, but it can only
name a TOML key (``[publish] regions``); a Lambda user set ``TAGDNS_REGIONS`` and
would look for a file that does not exist. Pure: callers pass the text.
"""

from __future__ import annotations

from resolver.core.document import REGION_PATTERN
from resolver.core.names import check_zone
from resolver.errors import ConfigError, InvalidName

ALL_REGIONS = "all"
MAX_TAG_KEY = 128
"""Characters: EC2's limit for a tag key."""


def parse_regions(text: str, field: str) -> tuple[str, ...]:
    """``all`` or ``r1,r2`` (spaces around commas allowed) as a tuple of regions."""
    regions = tuple(part.strip() for part in text.split(",") if part.strip())
    if not regions:
        raise ConfigError(f"{field}: expected 'all' or a comma-separated list of regions")
    if ALL_REGIONS in regions:
        if len(regions) > 1:
            raise ConfigError(f"{field}: 'all' cannot be combined with named regions")
        return regions
    for region in regions:
        if not REGION_PATTERN.match(region):
            hint = " (did you mean 'all'?)" if region.lower() == ALL_REGIONS else ""
            raise ConfigError(f"{field}: {region!r} is not a region name{hint}")
    return regions


def check_tag_key(value: str, field: str) -> None:
    if not 0 < len(value) <= MAX_TAG_KEY or not value.strip():
        raise ConfigError(f"{field}: must be 1 to {MAX_TAG_KEY} characters, not blank")


def check_zone_text(value: str, field: str) -> None:
    """As ``[view] zone``: a safe zone, written as it is served (lowercase, no spaces)."""
    try:
        zone = check_zone(value)
    except InvalidName as exc:
        raise ConfigError(f"{field} {value!r} {exc}") from None
    if zone != value:
        raise ConfigError(f"{field} {value!r} must be lowercase, without surrounding spaces")
