"""The Lambda handler's TAGDNS_* variables: errors name the variable, empty means unset.

No AWS: ``config_from_env`` reads only the environment it is given (and a file).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.config import PublishConfig
from resolver.errors import ConfigError
from resolver.lambda_handler import config_from_env

BASE = {"TAGDNS_BUCKET": "fleet-config", "TAGDNS_REGIONS": "us-east-1"}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"TAGDNS_REGIONS": "ALL"},
            "TAGDNS_REGIONS: 'ALL' is not a region name (did you mean 'all'?)",
        ),
        ({"TAGDNS_REGIONS": "us-east-1,mars"}, "TAGDNS_REGIONS: 'mars' is not a region name"),
        ({"TAGDNS_REGIONS": " , "}, "TAGDNS_REGIONS: expected 'all' or a comma-separated list"),
        (
            {"TAGDNS_REGIONS": "all,eu-west-1"},
            "TAGDNS_REGIONS: 'all' cannot be combined with named regions",
        ),
        (
            {"TAGDNS_BUCKET": "s3://fleet-config/dns"},
            "TAGDNS_BUCKET 's3://fleet-config/dns': give the bucket name, not an s3:// URL; "
            "use TAGDNS_BUCKET 'fleet-config' and TAGDNS_PREFIX 'dns'",
        ),
        (
            {"TAGDNS_PREFIX": "s3://fleet-config/dns"},
            "TAGDNS_PREFIX 's3://fleet-config/dns' is an s3:// URL, not a key prefix; "
            "use TAGDNS_BUCKET 'fleet-config' and TAGDNS_PREFIX 'dns'",
        ),
        ({"TAGDNS_PREFIX": "/dns"}, "TAGDNS_PREFIX '/dns' is not a relative key"),
        ({"TAGDNS_PREFIX": "dns "}, "TAGDNS_PREFIX 'dns ' holds whitespace"),
        ({"TAGDNS_TAG_KEY": " "}, "TAGDNS_TAG_KEY: must be 1 to 128 characters, not blank"),
        ({"TAGDNS_TAG_KEY": "k" * 129}, "TAGDNS_TAG_KEY: must be 1 to 128 characters"),
        (
            {"TAGDNS_ZONE": "Fleet.Internal"},
            "TAGDNS_ZONE 'Fleet.Internal' must be lowercase, without surrounding spaces",
        ),
        ({"TAGDNS_ZONE": "ec2.internal"}, "TAGDNS_ZONE 'ec2.internal' would shadow AWS's"),
        (
            {"TAGDNS_CONFIG": "/nonexistent/tagdns.toml"},
            "TAGDNS_CONFIG: /nonexistent/tagdns.toml: ",
        ),
    ],
)
def test_errors_name_the_variable(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_env({**BASE, **variables})

    text = str(raised.value)
    assert text.startswith(message)
    assert "[publish]" not in text and "[view]" not in text and "environment" not in text
    assert "\n" not in text


def test_empty_variables_count_as_unset() -> None:
    """A variable cleared in the console is often left as "": the documented default
    applies, not an empty value (an empty prefix would publish at the bucket's root)."""
    empty = dict.fromkeys(
        ("TAGDNS_CONFIG", "TAGDNS_PREFIX", "TAGDNS_REGIONS", "TAGDNS_TAG_KEY", "TAGDNS_ZONE"), ""
    )

    config = config_from_env({"TAGDNS_BUCKET": "fleet-config", **empty})

    assert config.publish == PublishConfig(bucket="fleet-config")
    assert (config.publish.prefix, config.publish.regions) == ("dns", ("all",))
    assert config.view.zone == "internal"
    with pytest.raises(ConfigError, match=r"^no bucket: set TAGDNS_BUCKET"):
        config_from_env({"TAGDNS_BUCKET": ""})


def test_an_empty_variable_leaves_the_files_value(tmp_path: Path) -> None:
    path = tmp_path / "tagdns.toml"
    path.write_text('[publish]\nbucket = "fleet-config"\nprefix = "fleet/dns"\n')

    config = config_from_env({"TAGDNS_CONFIG": str(path), "TAGDNS_PREFIX": ""})

    assert config.publish.prefix == "fleet/dns"
