"""A bad AWS_* setting is one line naming the variable, exit 2, in every AWS-touching command.

botocore reads these variables when it builds a client and raises a bare
ValueError; no request is made, so none of these tests needs an AWS endpoint.
boto3 itself is used as is: only the environment is set.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from resolver.adapters.aws import (
    S3_READ_TIMEOUT,
    describe_error,
    ec2_client,
    environment_fault,
    make_session,
    s3_client,
)
from resolver.cli import main
from resolver.errors import ConfigError

TAGDNS = Path(sys.executable).with_name("tagdns")

# Each bad setting and the line it must give (after "tagdns: ").
BAD_SETTINGS = [
    (
        {"AWS_ENDPOINT_URL": "notaurl"},
        "AWS_ENDPOINT_URL: 'notaurl' is not an endpoint URL "
        "(expected e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:5000)",
    ),
    (
        {"AWS_ENDPOINT_URL": "localhost:5000"},
        "AWS_ENDPOINT_URL: 'localhost:5000' is not an endpoint URL "
        "(expected e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:5000)",
    ),
    (
        {"AWS_ENDPOINT_URL_S3": "s3 please", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
        "AWS_ENDPOINT_URL_S3: 's3 please' is not an endpoint URL "
        "(expected e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:5000)",
    ),
    ({"AWS_MAX_ATTEMPTS": "abc"}, "AWS_MAX_ATTEMPTS: 'abc' is not a whole number of at least 1"),
    ({"AWS_MAX_ATTEMPTS": "1.5"}, "AWS_MAX_ATTEMPTS: '1.5' is not a whole number of at least 1"),
    ({"AWS_MAX_ATTEMPTS": "0"}, "AWS_MAX_ATTEMPTS: '0' is not a whole number of at least 1"),
    (
        {"AWS_DEFAULT_REGION": "us east 1"},
        "AWS_DEFAULT_REGION: 'us east 1' is not a region name",
    ),
    ({"AWS_PROFILE": "nope"}, "AWS_PROFILE: profile 'nope' is not in the AWS config files"),
]
IDS = [
    "endpoint-not-url",
    "endpoint-no-scheme",
    "endpoint-s3-specific",
    "attempts-word",
    "attempts-fraction",
    "attempts-zero",
    "region",
    "profile",
]

_S3_OR_REGION = ("endpoint-s3-specific", "region")


@pytest.fixture(autouse=True)
def clean_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that need no lookup, and nothing from the machine's AWS files."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def set_all(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS, ids=IDS)
def test_s3_client_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], message: str
) -> None:
    set_all(monkeypatch, settings)

    with pytest.raises(ConfigError) as raised:
        s3_client(make_session())

    assert str(raised.value) == message


# An EC2 client is built for a named region, so AWS_DEFAULT_REGION does not enter.
@pytest.mark.parametrize(
    ("settings", "message"),
    [case for case, name in zip(BAD_SETTINGS, IDS, strict=True) if name not in _S3_OR_REGION],
    ids=[name for name in IDS if name not in _S3_OR_REGION],
)
def test_ec2_client_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], message: str
) -> None:
    set_all(monkeypatch, settings)

    with pytest.raises(ConfigError) as raised:
        ec2_client(make_session(), "eu-west-1")

    assert str(raised.value) == message


@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS, ids=IDS)
@pytest.mark.parametrize(
    "argv",
    [
        ["publish", "--bucket", "fleet-config", "--regions", "us-east-1"],
        ["lookup", "web1", "--source", "s3://fleet-config/dns/mapping.json", "--view", "public"],
        [
            "hosts",
            "--source",
            "s3://fleet-config/dns/mapping.json",
            "--view",
            "public",
            "--output",
            "-",
        ],
    ],
    ids=["publish", "lookup", "hosts"],
)
def test_every_aws_command_gives_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    settings: dict[str, str],
    message: str,
    argv: list[str],
) -> None:
    set_all(monkeypatch, settings)
    config = tmp_path / "tagdns.toml"
    config.write_text("")
    code = main([*argv, "--config", str(config)])

    captured = capsys.readouterr()
    assert (code, captured.err) == (2, f"tagdns: {message}\n")


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "tagdns.toml"
    config.write_text("")
    env = {**os.environ, "AWS_ENDPOINT_URL": "notaurl"}

    done = subprocess.run(
        [str(TAGDNS), "publish", "--config", str(config), "--bucket", "fleet-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "tagdns: AWS_ENDPOINT_URL: 'notaurl' is not an endpoint URL "
        "(expected e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:5000)\n"
    )


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"AWS_ENDPOINT_URL": ""},  # botocore: empty means unset
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
        {"AWS_ENDPOINT_URL": "http://[::1]:5000"},
        {"AWS_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com/"},
        {"AWS_ENDPOINT_URL": "notaurl", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"},
        {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL": "ignored"},
        {"AWS_MAX_ATTEMPTS": " 3 "},
        {"AWS_DEFAULT_REGION": "eu-west-1"},
    ],
)
def test_settings_botocore_accepts_are_not_blamed(environ: dict[str, str]) -> None:
    assert environment_fault(environ, "s3") is None


def test_a_bad_setting_in_the_config_file_is_exit_2_naming_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("[default]\nmax_attempts = lots\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))

    with pytest.raises(ConfigError) as raised:
        s3_client(make_session())

    assert str(raised.value) == (
        "AWS configuration for the S3 client: invalid literal for int() with base 10: 'lots' "
        "(check the AWS_* environment variables and the AWS config file)"
    )


def test_each_client_reads_aws_max_attempts_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore stores the attempts it resolved in the config it was given; none is shared."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    first = s3_client(make_session())
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    second = s3_client(make_session())

    first_config: Any = first.meta.config  # botocore's stubs omit ``retries``
    second_config: Any = second.meta.config
    assert first_config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert second_config.retries == {"mode": "standard", "total_max_attempts": 3}


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            ReadTimeoutError(endpoint_url=None, error="read timeout"),  # type: ignore[arg-type]
            "timed out talking to the AWS endpoint",
        ),
        (
            ConnectTimeoutError(endpoint_url="http://127.0.0.1:9/b/k"),
            "timed out talking to http://127.0.0.1:9/b/k",
        ),
        (
            EndpointConnectionError(endpoint_url="http://user:secret@127.0.0.1:9/b/k"),
            "cannot connect to http://***:***@127.0.0.1:9/b/k",
        ),
    ],
    ids=["body-read-timeout-has-no-url", "connect-timeout", "credentials-in-url-masked"],
)
def test_transport_errors_name_the_endpoint_and_never_its_credentials(
    error: Exception, line: str
) -> None:
    assert describe_error(error) == line


def test_an_s3_endpoint_that_never_answers_fails_in_seconds(tmp_path: Path) -> None:
    """An endpoint that accepts and then says nothing (a wedged proxy): one attempt
    gives up after S3_READ_TIMEOUT, not botocore's 60 s, so ``check`` and
    ``lookup`` end well before an operator gives up on them."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "1",
        }
        started = time.monotonic()
        done = subprocess.run(
            [str(TAGDNS), "lookup", "api", "--view", "us-east-1", "--source", "s3://b/k"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            cwd=tmp_path,
        )
        took = time.monotonic() - started
    assert done.returncode == 1
    assert "timed out talking to" in done.stderr and done.stderr.count("\n") == 1
    assert S3_READ_TIMEOUT <= took < S3_READ_TIMEOUT + 10
