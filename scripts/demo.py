"""The whole tagdns loop on one machine, checked as it goes. Run it with ``scripts/demo``.

What happens, in order (every process is real; nothing is mocked):

1. ``moto_server`` stands in for AWS on a free loopback port. boto3 reaches it
   through ``AWS_ENDPOINT_URL``, exactly as it would reach AWS.
2. A small fleet in two regions, tagged ``dns=...``:
       us-east-1  alpha  dns=web1,api
       us-east-1  bravo  dns=api
       eu-west-1  delta  dns=db
3. ``tagdns publish`` scans both regions and writes ``s3://fleet-config/dns/mapping.json``.
4. A dnsmasq plays the VPC resolver: it knows the AWS-style name
   ``ip-10-0-0-99.ec2.internal`` and nothing else.
5. ``tagdns serve`` runs as a node in us-east-1 would: it reads the S3 object,
   polls it every second and forwards names it does not own to that dnsmasq.
6. ``dig`` asks the agent for a local name, a name with two instances, a
   remote name and the ``.internal`` name; each answer is compared with the
   addresses EC2 reports for the instances.
7. bravo's tag becomes ``dns=api,db``; publishing again moves ``db`` into
   us-east-1, and the agent's answer for ``db`` changes from delta's public
   address to bravo's private one within a poll or two.
8. Everything is stopped. The exit status is 0 only when every check passed.

Each check prints one PASS or FAIL line. Work files live in a temporary
directory, removed at the end (logs are printed first when a check failed).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import boto3

from devsupport.net import free_port

BIN = Path(sys.executable).parent  # the virtualenv's bin: tagdns and moto_server live here
TAGDNS = BIN / "tagdns"
MOTO_SERVER = BIN / "moto_server"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

HOME_REGION = "us-east-1"  # the agent runs as a node in this region
OTHER_REGION = "eu-west-1"
BUCKET = "fleet-config"
PREFIX = "dns"
IMAGE_ID = "ami-12c6146b"  # one of moto's built-in AMIs
AWS_NAME = "ip-10-0-0-99.ec2.internal"  # what AWS's own resolver answers on a VPC
AWS_ADDRESS = "10.0.0.99"
START_TIMEOUT = 30.0
CHANGE_TIMEOUT = 15.0  # the agent polls every second: a change shows within ~2 s


# --- printing ------------------------------------------------------------------------------


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def say(text: str = "") -> None:
    print(text, flush=True)


def show(command: list[str]) -> None:
    say(f"$ {shlex.join(command)}")


def indent(text: str, empty: str = "(nothing)") -> str:
    return "\n".join(f"    {line}" for line in text.rstrip("\n").splitlines()) or f"    {empty}"


# --- processes -----------------------------------------------------------------------------


@dataclass
class Background:
    """One long-running process, its stderr+stdout in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Processes:
    """Everything the demo started; ``stop_all`` runs however the demo ends."""

    workdir: Path
    started: list[Background] = field(default_factory=list)

    def start(self, name: str, command: list[str]) -> Background:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        background = Background(name, process, log)
        self.started.append(background)
        return background

    @staticmethod
    def stop(background: Background, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not go; the exit code."""
        if background.process.poll() is None:
            background.process.terminate()
            try:
                background.process.wait(timeout)
            except subprocess.TimeoutExpired:
                background.process.kill()
                background.process.wait()
        return background.process.returncode

    def stop_all(self) -> None:
        for background in reversed(self.started):
            self.stop(background)

    def print_logs(self, lines: int = 25) -> None:
        """The end of every process's log, for a run that failed."""
        for background in self.started:
            tail = "\n".join(background.log_text().splitlines()[-lines:])
            say(f"\n--- {background.name} log (last {lines} lines)\n{indent(tail)}")


def wait_for(what: str, ready: Callable[[], bool], background: Background) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if background.process.poll() is not None:
            raise DemoError(f"{what} exited early:\n{indent(background.log_text())}")
        if ready():
            return
        time.sleep(0.1)
    log = indent(background.log_text())
    raise DemoError(f"{what} not ready within {START_TIMEOUT:.0f} s:\n{log}")


class DemoError(Exception):
    """A step could not run at all (as opposed to a check that failed)."""


# --- checks --------------------------------------------------------------------------------


@dataclass
class Checks:
    passed: int = 0
    failed: list[str] = field(default_factory=list)

    def record(self, ok: bool, label: str, detail: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed.append(label)
        say(f"{'PASS' if ok else 'FAIL'}  {label}: {detail}")


@dataclass(frozen=True)
class Answer:
    text: str
    """What ``dig +noall +answer`` prints: the answer section."""
    status: str
    addresses: list[str]


def dig(port: int, name: str) -> Answer:
    """Ask the agent for ``name`` A with dig (+comments too, for the status line)."""
    command = ["dig", "@127.0.0.1", "-p", str(port), name, "A"]
    command += ["+noall", "+answer", "+comments", "+time=2", "+tries=1"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)
    lines = completed.stdout.splitlines()
    status = next(
        (line.split("status: ")[1].split(",")[0] for line in lines if "status: " in line), ""
    )
    records = [line for line in lines if line.strip() and not line.startswith(";")]
    addresses = [fields[4] for fields in map(str.split, records) if fields[3:4] == ["A"]]
    text = "\n".join(records) if status else (completed.stdout + completed.stderr)
    return Answer(text, status or "no reply", addresses)


def check_answer(checks: Checks, port: int, name: str, expected: list[str], why: str) -> None:
    """dig ``name``; PASS when the A records are exactly ``expected`` (none: NXDOMAIN)."""
    show(["dig", "@127.0.0.1", "-p", str(port), name, "+noall", "+answer"])
    answer = dig(port, name)
    say(indent(answer.text, empty="(no answer records)"))
    want_status = "NOERROR" if expected else "NXDOMAIN"
    ok = sorted(answer.addresses) == sorted(expected) and answer.status == want_status
    detail = f"{answer.status}, {', '.join(sorted(answer.addresses)) or 'no address'}"
    if not ok:
        detail += f" (expected {want_status}, {', '.join(sorted(expected)) or 'no address'})"
    checks.record(ok, f"{name} ({why})", detail)


# --- the story -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    label: str
    region: str
    instance_id: str
    private_ipv4: str
    public_ipv4: str


def aws_environment(endpoint: str) -> None:
    """Point this process and its children at moto, never at a real account."""
    for variable in list(os.environ):
        if variable.startswith("AWS_"):
            del os.environ[variable]
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": HOME_REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )


def start_moto(processes: Processes) -> str:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)]
    show(["moto_server", *command[1:]])
    moto = processes.start("moto_server", command)

    def answering() -> bool:
        try:
            # An http:// URL built from our own port, not user input.
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1) as reply:  # noqa: S310
                reply.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True

    wait_for("moto_server", answering, moto)
    return endpoint


def launch(label: str, region: str, tag: str) -> Instance:
    ec2 = boto3.client("ec2", region_name=region)
    reply = ec2.run_instances(
        ImageId=IMAGE_ID,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "dns", "Value": tag}, {"Key": "Name", "Value": label}],
            }
        ],
    )
    found = reply["Instances"][0]
    instance = Instance(
        label, region, found["InstanceId"], found["PrivateIpAddress"], found["PublicIpAddress"]
    )
    say(
        f"    {region}  {label:<6} {instance.instance_id}  dns={tag:<9} "
        f"private {instance.private_ipv4:<15} public {instance.public_ipv4}"
    )
    return instance


def retag(instance: Instance, tag: str) -> None:
    say("# with boto3; the AWS CLI equivalent:")
    say(
        f"$ aws ec2 create-tags --region {instance.region} --resources {instance.instance_id} "
        f"--tags 'Key=dns,Value=\"{tag}\"'"
    )
    boto3.client("ec2", region_name=instance.region).create_tags(
        Resources=[instance.instance_id], Tags=[{"Key": "dns", "Value": tag}]
    )


def publish() -> None:
    command = [str(TAGDNS), "publish", "--bucket", BUCKET, "--prefix", PREFIX]
    command += ["--regions", f"{HOME_REGION},{OTHER_REGION}"]
    show(["tagdns", *command[1:]])
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    say(indent(completed.stdout + completed.stderr))
    if completed.returncode != 0:
        raise DemoError(f"tagdns publish exited {completed.returncode}")


def start_vpc_resolver(processes: Processes) -> int:
    """dnsmasq as the VPC resolver: the AWS-style name, NXDOMAIN for anything else."""
    port = free_port()
    command = [DNSMASQ, "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"]
    command += [f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces"]
    command += ["--user=root", "--pid-file=", "--log-facility=-"]
    command += [f"--host-record={AWS_NAME},{AWS_ADDRESS}", "--local=/internal/"]
    show(command)
    dnsmasq = processes.start("dnsmasq", command)
    wait_for("dnsmasq", lambda: "started" in dnsmasq.log_text(), dnsmasq)
    return port


def start_agent(processes: Processes, upstream_port: int) -> tuple[Background, int]:
    command = [str(TAGDNS), "serve", "--source", f"s3://{BUCKET}/{PREFIX}/mapping.json"]
    command += ["--poll", "1", "--view", HOME_REGION, "--listen", "127.0.0.1:0"]
    command += ["--upstream", f"127.0.0.1:{upstream_port}", "--cache", "none"]
    show(["tagdns", *command[1:]])
    agent = processes.start("agent", command)
    # --listen 127.0.0.1:0: the kernel picks a free port; the agent names it when ready.
    wait_for("tagdns serve", lambda: "ready: " in agent.log_text(), agent)
    ready = next(line for line in agent.log_text().splitlines() if "ready: " in line)
    port = int(ready.rsplit(":", 1)[1].split(",")[0])
    say(indent("\n".join(agent_lines(agent, "serving serial", "forwarding", "ready:"))))
    return agent, port


def agent_lines(agent: Background, *needles: str) -> list[str]:
    """The agent's log lines mentioning any of ``needles``, without the timestamp."""
    lines = agent.log_text().splitlines()
    return [line.split(" ", 2)[2] for line in lines if any(n in line for n in needles)]


def wait_for_answer(port: int, name: str, expected: list[str]) -> float:
    """Seconds until the agent answers ``expected`` for ``name`` (or the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < CHANGE_TIMEOUT:
        if sorted(dig(port, name).addresses) == sorted(expected):
            break
        time.sleep(0.2)
    return time.monotonic() - started


def run(processes: Processes, checks: Checks) -> None:
    step("1. moto_server stands in for AWS")
    endpoint = start_moto(processes)
    aws_environment(endpoint)
    say(f"    export AWS_ENDPOINT_URL={endpoint}  (and test credentials)")

    step("2. a small fleet in two regions, tagged dns=...")
    boto3.client("s3", region_name=HOME_REGION).create_bucket(Bucket=BUCKET)
    alpha = launch("alpha", HOME_REGION, "web1,api")
    bravo = launch("bravo", HOME_REGION, "api")
    delta = launch("delta", OTHER_REGION, "db")

    step("3. publish the fleet's names to S3")
    publish()

    step("4. a dnsmasq plays the VPC resolver (it knows AWS's own .internal names)")
    upstream = start_vpc_resolver(processes)

    step(f"5. the agent, as a node in {HOME_REGION}: the S3 object, polled every second")
    agent, port = start_agent(processes, upstream)

    step("6. ask the agent")
    check_answer(checks, port, "web1.internal", [alpha.private_ipv4], "local, private address")
    check_answer(
        checks, port, "api", [alpha.private_ipv4, bravo.private_ipv4], "two local instances"
    )
    check_answer(checks, port, "db", [delta.public_ipv4], f"only in {OTHER_REGION}: public")
    # A remote name answers bare only: db.internal is not ours, the VPC resolver says NXDOMAIN.
    check_answer(checks, port, "db.internal", [], "remote names get no zone suffix")
    check_answer(checks, port, AWS_NAME, [AWS_ADDRESS], "AWS name, forwarded to the VPC resolver")

    step(f"7. bravo also takes the name db; publish again; db is now local to {HOME_REGION}")
    retag(bravo, "api,db")
    publish()
    seconds = wait_for_answer(port, "db", [bravo.private_ipv4])
    say(f"    (the agent's answer changed after {seconds:.1f} s)")
    say(indent("\n".join(agent_lines(agent, "serving serial")[-1:])))
    check_answer(checks, port, "db", [bravo.private_ipv4], "moved: bravo's private address")
    check_answer(checks, port, "db.internal", [bravo.private_ipv4], "now local, so with zone")

    step("8. stop everything")
    code = processes.stop(agent)
    say(indent("\n".join(agent_lines(agent, "stopped"))))
    checks.record(code == 0, "agent stops on SIGTERM", f"exit code {code}")


def main() -> int:
    # SIGTERM/SIGHUP end the demo like Ctrl-C does: through the finally below.
    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tagdns-demo-"))
    processes = Processes(workdir)
    checks = Checks()
    error: str | None = None
    try:
        run(processes, checks)
    except DemoError as exc:
        error = str(exc)
    except (KeyboardInterrupt, SystemExit):
        say("\ndemo: interrupted: stopping everything it started")
        raise
    finally:
        processes.stop_all()
        if checks.failed or error:
            processes.print_logs()
        shutil.rmtree(workdir, ignore_errors=True)
    if error:
        print(f"\ndemo: ERROR: {error}")
        return 1
    total = checks.passed + len(checks.failed)
    took = time.monotonic() - started
    if checks.failed:
        print(f"\ndemo: FAIL: {len(checks.failed)} of {total} checks failed ({took:.1f} s)")
        for label in checks.failed:
            print(f"    {label}")
        return 1
    print(f"\ndemo: PASS: all {total} checks passed ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
