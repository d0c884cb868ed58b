"""Benchmark: a full publish of a large fleet, regions scanned concurrently vs one at a time.

Starts its own moto_server, launches the fleet (default 5,000 tagged instances
over 4 regions), then times ``resolver.publisher.publish`` -- the code path
``tagdns publish`` runs -- with the default worker count and with
``max_workers=1``. Each repetition publishes to a fresh prefix, so every run
does the same work: read a missing mapping, scan, build, write every object.
The table goes into docs/performance.md between the publish markers.

Run: scripts/bench publish [--instances N] [--regions N] [--repeat N] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import boto3

from devsupport.net import free_port
from devsupport.report import write_marked_section
from resolver.adapters.ec2_scan import DEFAULT_MAX_WORKERS
from resolver.publisher import PublishOptions, publish

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- bench:publish:begin -->"
END = "<!-- bench:publish:end -->"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1", "sa-east-1")
BUCKET = "bench-fleet"
PER_RESERVATION = 50
IMAGE_ID = "ami-12c6146b"
DOC_HEADER = """# Performance

Measured figures for tagdns, each produced by a script in this repository and
written here by it. The machine is a shared 2-core VM: treat the numbers as
orders of magnitude and ratios, not as absolutes. Re-run the quoted command to
reproduce a table.
"""


@dataclass(frozen=True)
class Run:
    mode: str
    seconds: float
    scan_seconds: float
    regions: int
    pages: int
    instances: int
    names: int


@dataclass(frozen=True)
class Scenario:
    label: str
    region_count: int
    runs: list[Run]
    note: str


def start_moto(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (log_dir / "moto_server.log").open("wb")
    server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 - http only
                return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None:
                raise SystemExit("bench: moto_server exited at start") from None
            time.sleep(0.1)
    process.kill()
    raise SystemExit("bench: moto_server did not start within 30 s")


def start_proxy(target: str, delay_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    """The delaying proxy (benchmarks/latency_proxy.py) in its own process."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("latency_proxy.py")),
            target,
            str(port),
            str(delay_ms),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("bench: latency proxy did not start within 10 s")


def launch_fleet(regions: tuple[str, ...], instances: int) -> None:
    """``instances`` running instances spread evenly, 50 to a reservation, 2 names each."""
    per_region = instances // len(regions)
    for index, region in enumerate(regions):
        ec2 = boto3.client("ec2", region_name=region)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]
        subnet = ec2.create_subnet(
            VpcId=vpc["VpcId"], CidrBlock="10.0.0.0/17", AvailabilityZone=f"{region}a"
        )["Subnet"]["SubnetId"]
        ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
        count = per_region + (instances % len(regions) if index == 0 else 0)
        launched = 0
        while launched < count:
            batch = min(PER_RESERVATION, count - launched)
            group = f"r{index}-g{launched // PER_RESERVATION:03d}"
            ec2.run_instances(
                ImageId=IMAGE_ID,
                MinCount=batch,
                MaxCount=batch,
                SubnetId=subnet,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        # A name per group of 50 (round-robin) plus one shared service name.
                        "Tags": [{"Key": "dns", "Value": f"{group},svc{index}"}],
                    }
                ],
            )
            launched += batch


def timed_publish(mode: str, max_workers: int, regions: tuple[str, ...], prefix: str) -> Run:
    options = PublishOptions(
        bucket=BUCKET,
        prefix=prefix,
        regions=regions,
        max_workers=max_workers,
    )
    started = time.perf_counter()
    result = publish(options)
    seconds = time.perf_counter() - started
    return Run(
        mode=mode,
        seconds=seconds,
        scan_seconds=result.plan.scan_seconds,
        regions=len(result.plan.scans),
        pages=sum(scan.pages for scan in result.plan.scans),
        instances=result.plan.summary.instances,
        names=result.plan.summary.names,
    )


def machine_note() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores ({cpu}), shared and noisy; "
        f"Python {platform.python_version()}, boto3 {version('boto3')}, "
        f"moto {version('moto')} (moto_server on loopback)"
    )


def render_table(scenarios: list[Scenario], args: argparse.Namespace) -> str:
    one, many = "one region at a time", "concurrent"
    command = f"scripts/bench publish --instances {args.instances} --regions {args.regions} " + (
        f"--repeat {args.repeat} --latency-ms {args.latency_ms:g}"
    )
    lines = [
        "| fleet | mode | workers | publish median (s) | scan median (s) | runs (s) |",
        "|---|---|---:|---:|---:|---|",
    ]
    ratios: list[str] = []
    for scenario in scenarios:
        runs = {mode: [r for r in scenario.runs if r.mode == mode] for mode in (many, one)}
        total = {m: statistics.median(r.seconds for r in rs) for m, rs in runs.items()}
        scan = {m: statistics.median(r.scan_seconds for r in rs) for m, rs in runs.items()}
        for mode in (many, one):
            workers = str(min(DEFAULT_MAX_WORKERS, scenario.region_count)) if mode == many else "1"
            lines.append(
                f"| {scenario.label} | {mode} | {workers} | {total[mode]:.2f} | {scan[mode]:.2f} | "
                + ", ".join(f"{r.seconds:.2f}" for r in runs[mode])
                + " |"
            )
        ratios.append(
            f"- {scenario.label}: publish **{total[one] / total[many]:.2f}x**, "
            f"scan **{scan[one] / scan[many]:.2f}x** ({scenario.note})"
        )
    return "\n".join(
        [
            f"Median of {args.repeat} runs per mode; every run is a full publish to a fresh "
            "prefix (read, scan, build, write every object).",
            "",
            *lines,
            "",
            "Speed-up of the concurrent scan (one at a time / concurrent):",
            "",
            *ratios,
            "",
            f"Reproduce: `{command}`",
            "",
            f"Measured: {machine_note()}.",
        ]
    )


def run_modes(regions: tuple[str, ...], repeat: int, tag: str) -> list[Run]:
    # One untimed run first: moto builds each region's backend on first use, a
    # one-off cost that would otherwise land on whichever mode runs first.
    timed_publish("warm-up", DEFAULT_MAX_WORKERS, regions, f"bench/{tag}/warm-up")
    runs: list[Run] = []
    modes = [("concurrent", DEFAULT_MAX_WORKERS), ("one region at a time", 1)]
    for rep in range(repeat):
        # Alternate the order so drift on a noisy machine hits both modes alike.
        for mode, workers in modes if rep % 2 == 0 else modes[::-1]:
            run = timed_publish(mode, workers, regions, f"bench/{tag}/{workers}/{rep}")
            print(
                f"  {tag} {mode}: {run.seconds:.2f} s (scan {run.scan_seconds:.2f} s)",
                file=sys.stderr,
            )
            runs.append(run)
    return runs


def reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - http only
        pass


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench publish", description=__doc__)
    parser.add_argument("--instances", type=int, default=5000)
    parser.add_argument("--regions", type=int, default=4, choices=range(1, len(REGIONS) + 1))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=100.0,
        help="delay per request for the 'all regions' run through a proxy; 0 skips that run",
    )
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs alone")
    args = parser.parse_args()
    regions = REGIONS[: args.regions]
    scenarios: list[Scenario] = []

    with tempfile.TemporaryDirectory(prefix="tagdns-bench-") as scratch:
        process, url = start_moto(Path(scratch))
        proxy: subprocess.Popen[bytes] | None = None
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - moto's fake account
            AWS_DEFAULT_REGION=regions[0],
            AWS_EC2_METADATA_DISABLED="true",
        )
        try:
            started = time.perf_counter()
            launch_fleet(regions, args.instances)
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            print(
                f"bench publish: launched {args.instances} instances in {len(regions)} regions "
                f"in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            runs = run_modes(regions, args.repeat, "large")
            sample = runs[0]
            scenarios.append(
                Scenario(
                    label=f"{sample.instances} instances, {sample.names} names, "
                    f"{len(regions)} regions, moto direct",
                    region_count=len(regions),
                    runs=runs,
                    note="moto_server and botocore's parsing share the 2 cores: pure CPU",
                )
            )
            if args.latency_ms > 0:
                reset(url)
                small = 50 * len(regions)
                launch_fleet(regions, small)
                boto3.client("s3").create_bucket(Bucket=BUCKET)
                proxy, proxy_url = start_proxy(url, args.latency_ms)
                os.environ["AWS_ENDPOINT_URL"] = proxy_url
                runs = run_modes(("all",), args.repeat, "all")
                sample = runs[0]
                scenarios.append(
                    Scenario(
                        label=f"{sample.instances} instances, --regions all "
                        f"({sample.regions} regions), +{args.latency_ms:g} ms per request",
                        region_count=sample.regions,
                        runs=runs,
                        note="waiting on round trips, as against AWS",
                    )
                )
        finally:
            for child in (proxy, process):
                if child is not None:
                    child.terminate()
                    child.wait(timeout=10)

    table = render_table(scenarios, args)
    print(table)
    if not args.no_write:
        write_marked_section(
            PERFORMANCE_DOC,
            BEGIN,
            END,
            table + "\n",
            heading="## Publish: concurrent region scan\n\n",
            new_file=DOC_HEADER + "\n",
        )
        print(f"bench publish: wrote {PERFORMANCE_DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
