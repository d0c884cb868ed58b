"""The Lambda handler: the same publish, configured from TAGDNS_* variables, against moto."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from resolver.core.document import parse_document
from resolver.errors import ConfigError, DocumentError, ShrinkError
from resolver.lambda_handler import handler
from tests.integration.conftest import Fleet, object_versions, read_object

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, bucket: str) -> None:
    monkeypatch.setenv("TAGDNS_BUCKET", bucket)
    monkeypatch.setenv("TAGDNS_PREFIX", "lambda")
    monkeypatch.setenv("TAGDNS_REGIONS", "us-east-1, eu-west-1")
    monkeypatch.setenv("TAGDNS_ZONE", "fleet.internal")
    monkeypatch.delenv("TAGDNS_CONFIG", raising=False)
    monkeypatch.delenv("TAGDNS_TAG_KEY", raising=False)


@pytest.mark.usefixtures("lambda_env")
def test_handler_publishes_then_finds_nothing_to_do(
    fleet: Fleet, s3: S3Client, bucket: str
) -> None:
    fleet.launch("us-east-1", "web1,api")
    fleet.launch("eu-west-1", "db,$(reboot)")

    first = handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)

    assert first["changed"] is True
    assert first["previous_serial"] is None
    assert (first["instances"], first["names"], first["rejected"]) == (2, 3, 1)
    assert first["regions"] == ["eu-west-1", "us-east-1"]
    assert first["added"] == ["api", "db", "web1"]
    assert first["written"][-1] == "lambda/mapping.json"
    doc = parse_document(read_object(s3, bucket, "lambda/mapping.json"))
    assert doc.serial == first["serial"]
    hosts = read_object(s3, bucket, "lambda/hosts/us-east-1.hosts").decode()
    assert " web1.fleet.internal web1\n" in hosts
    assert "reboot" not in hosts

    second = handler({}, None)

    assert second["changed"] is False
    assert second["written"] == []
    assert second["serial"] == first["serial"]
    assert set(object_versions(s3, bucket).values()) == {1}


@pytest.mark.usefixtures("lambda_env")
def test_handler_raises_so_lambda_records_the_failure(
    fleet: Fleet,
    s3: S3Client,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = [fleet.launch("us-east-1", name)[0] for name in ("a1", "a2", "a3")]
    handler({}, None)
    fleet.terminate("us-east-1", *names[1:])
    capsys.readouterr()

    with pytest.raises(ConfigError, match=r"event key 'force': an event cannot pass the guards"):
        handler({"force": True}, None)  # force is not an event's decision
    with pytest.raises(ShrinkError):
        handler({}, None)
    logged = capsys.readouterr().out
    assert "- a2" in logged and "- a3" in logged, "the refused run still logs what it found"

    monkeypatch.delenv("TAGDNS_BUCKET")
    with pytest.raises(ConfigError, match=r"no bucket: set TAGDNS_BUCKET \(or \[publish\]"):
        handler({}, None)
    assert object_versions(s3, bucket)["lambda/mapping.json"] == 1


def test_handler_reads_a_config_file_and_dry_run_events(
    fleet: Fleet, s3: S3Client, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.launch("eu-west-1", "web1")
    config = tmp_path / "tagdns.toml"
    config.write_text(f'[publish]\nbucket = "{bucket}"\nregions = ["eu-west-1"]\n')
    for name in ("TAGDNS_BUCKET", "TAGDNS_PREFIX", "TAGDNS_REGIONS", "TAGDNS_ZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAGDNS_CONFIG", str(config))

    result = handler({"dry_run": True}, None)

    assert result["changed"] is True
    assert result["written"] == []
    assert result["would_write"] == [
        "dns/hosts/eu-west-1.hosts",
        "dns/hosts/public.hosts",
        "dns/mapping.json",
    ]
    assert result["names"] == 1
    assert object_versions(s3, bucket) == {}


@pytest.mark.usefixtures("lambda_env")
@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"dry_run": "true"}, r"event key 'dry_run': expected true or false .* got 'true'"),
        ({"dry_run": 1}, r"event key 'dry_run': expected true or false .* got 1"),
        ({"dryrun": True}, r"event key 'dryrun': not a known key \(did you mean 'dry_run'\?\)"),
    ],
)
def test_a_mistyped_dry_run_event_is_refused_and_writes_nothing(
    fleet: Fleet, s3: S3Client, bucket: str, event: dict[str, object], error: str
) -> None:
    fleet.launch("us-east-1", "web1")

    with pytest.raises(ConfigError, match=error):
        handler(event, None)

    assert object_versions(s3, bucket) == {}


@pytest.mark.usefixtures("lambda_env")
def test_the_lambdas_refusals_say_how_to_force_without_an_event(
    fleet: Fleet, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Lambda has no --force: its errors point at the CLI, from a shell."""
    names = [fleet.launch("us-east-1", name)[0] for name in ("a1", "a2", "a3")]
    handler({}, None)
    fleet.terminate("us-east-1", *names[1:])

    with pytest.raises(ShrinkError) as raised:
        handler({}, None)
    assert str(raised.value).endswith(
        "nothing written (run tagdns publish --force from a shell to publish anyway)"
    )
    assert "(--force" not in str(raised.value)

    s3.put_object(Bucket=bucket, Key="lambda/mapping.json", Body=b"{not json")
    with pytest.raises(DocumentError) as invalid:
        handler({}, None)
    assert str(invalid.value).endswith("(run tagdns publish --force from a shell to replace it)")

    monkeypatch.setenv("TAGDNS_REGIONS", "ALL")
    with pytest.raises(ConfigError, match=r"^TAGDNS_REGIONS: 'ALL' is not a region name"):
        handler({}, None)
