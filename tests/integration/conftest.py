"""A real ``moto_server`` for the whole session, reset before each test that uses it.

boto3 reaches it through AWS_ENDPOINT_URL exactly as it would reach AWS; nothing
in boto3 is patched. Fixtures:

- ``moto``: the running server (URL, reset); environment pointed at it.
- ``aws``: the same, reset first, for a test that needs a clean account.
- ``s3``: an S3 client; ``bucket``: a fresh versioned bucket (versions count PUTs).
- ``fleet``: a ``Fleet`` helper launching tagged instances in any region.

The ``aws_env`` dict holds the environment a subprocess (the console script) needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from devsupport.net import free_port

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import TagSpecificationTypeDef
    from mypy_boto3_s3 import S3Client

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
HOME_REGION = "us-east-1"
IMAGE_ID = "ami-12c6146b"  # one of moto's built-in AMIs
_START_TIMEOUT = 30.0

# The AWS environment every test sees: credentials for moto, no profile or config
# file from the machine, no instance-metadata lookups, and few retries so failure
# tests are fast.
_AWS_VARIABLES_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_REGION",
    "AWS_RETRY_MODE",
)


@dataclass(frozen=True)
class MotoServer:
    url: str
    env: dict[str, str] = field(default_factory=dict)
    """AWS_* variables pointing at this server (for subprocesses)."""

    def reset(self) -> None:
        """Forget every resource in every region: each test starts from an empty account."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited early: {log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as reply:
                reply.read()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {url} within {_START_TIMEOUT:.0f} s")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """Start moto_server on a free loopback port and point the AWS environment at it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_answering(url, process, log)
        env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": HOME_REGION,
            "AWS_MAX_ATTEMPTS": "2",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        with pytest.MonkeyPatch.context() as patch:
            for name in _AWS_VARIABLES_CLEARED:
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            yield MotoServer(url, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def aws(moto: MotoServer) -> MotoServer:
    """The moto server, emptied: tests never see each other's resources."""
    moto.reset()
    return moto


@pytest.fixture
def aws_env(aws: MotoServer) -> dict[str, str]:
    """A complete environment for a subprocess talking to moto (PATH etc. kept)."""
    env = {k: v for k, v in os.environ.items() if k not in _AWS_VARIABLES_CLEARED}
    env.update(aws.env)
    return env


@pytest.fixture
def s3(aws: MotoServer) -> S3Client:
    return boto3.client("s3", region_name=HOME_REGION)


@pytest.fixture
def bucket(s3: S3Client) -> str:
    """A versioned bucket: its version list counts every PUT, even of identical bytes."""
    name = "fleet-config"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def object_versions(s3: S3Client, bucket: str) -> dict[str, int]:
    """Key -> number of versions stored: how many times each key was PUT."""
    counts: dict[str, int] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def read_object(s3: S3Client, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@dataclass
class Network:
    """One VPC per region: a public subnet (public IPv4 + IPv6) and a private one."""

    public_subnet: str
    private_subnet: str
    az: str


@dataclass
class Fleet:
    """Launches instances into moto, one VPC per region, created on first use."""

    tag_key: str = "dns"
    clients: dict[str, EC2Client] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)

    def ec2(self, region: str) -> EC2Client:
        if region not in self.clients:
            self.clients[region] = boto3.client("ec2", region_name=region)
        return self.clients[region]

    def network(self, region: str) -> Network:
        if region not in self.networks:
            ec2 = self.ec2(region)
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
            v6_block = vpc["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
            az = f"{region}a"
            public = ec2.create_subnet(
                VpcId=vpc["VpcId"],
                CidrBlock="10.0.0.0/18",
                AvailabilityZone=az,
                Ipv6CidrBlock=v6_block.replace("/56", "/64"),
            )["Subnet"]["SubnetId"]
            ec2.modify_subnet_attribute(SubnetId=public, MapPublicIpOnLaunch={"Value": True})
            private = ec2.create_subnet(
                VpcId=vpc["VpcId"], CidrBlock="10.0.64.0/18", AvailabilityZone=az
            )["Subnet"]["SubnetId"]
            self.networks[region] = Network(public, private, az)
        return self.networks[region]

    def launch(
        self,
        region: str,
        tag_value: str | None,
        count: int = 1,
        *,
        public: bool = True,
        ipv6: bool = False,
        tag_key: str | None = None,
    ) -> list[str]:
        """``count`` instances in one reservation; returns their ids (launch order)."""
        network = self.network(region)
        tags: list[TagSpecificationTypeDef] = []
        if tag_value is not None:
            tags.append(
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": tag_key or self.tag_key, "Value": tag_value}],
                }
            )
        subnet = network.public_subnet if public else network.private_subnet
        if ipv6:
            reply = self.ec2(region).run_instances(
                ImageId=IMAGE_ID,
                MinCount=count,
                MaxCount=count,
                SubnetId=subnet,
                Ipv6AddressCount=1,
                TagSpecifications=tags,
            )
        else:
            reply = self.ec2(region).run_instances(
                ImageId=IMAGE_ID,
                MinCount=count,
                MaxCount=count,
                SubnetId=subnet,
                TagSpecifications=tags,
            )
        return [instance["InstanceId"] for instance in reply["Instances"]]

    def stop(self, region: str, *instance_ids: str) -> None:
        self.ec2(region).stop_instances(InstanceIds=list(instance_ids))

    def terminate(self, region: str, *instance_ids: str) -> None:
        self.ec2(region).terminate_instances(InstanceIds=list(instance_ids))

    def retag(self, region: str, instance_id: str, value: str) -> None:
        self.ec2(region).create_tags(
            Resources=[instance_id], Tags=[{"Key": self.tag_key, "Value": value}]
        )


@pytest.fixture
def fleet(aws: MotoServer) -> Fleet:
    return Fleet()
