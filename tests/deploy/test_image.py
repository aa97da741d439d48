"""The worker image (deploy/Dockerfile) runs: it encodes offline, and a worker container on the host
network serves /healthz and /readyz and turns one interaction into one recommendation, against an
embedded broker started here.

Needs a container engine that can run containers and a prebuilt image: `make image` builds it
(several minutes, so the test suite never does). `make image-test` runs this module with every
skip turned into a failure. Environment:

- ``PROMPTREC_IMAGE``: the image (default ``localhost/promptrec:latest``, what `make image` tags).
- ``PROMPTREC_ENGINE``: ``podman`` (default when installed) or ``docker``.
- ``PROMPTREC_ENGINE_FLAGS``: extra ``run`` flags, e.g. for a sandbox without CAP_SYS_RESOURCE
  and with hybrid cgroups: ``--runtime runc --ulimit nofile=20000:20000 --ulimit
  nproc=32768:32768``.
- ``PROMPTREC_IMAGE_TEST_REQUIRED=1``: fail instead of skipping (set by `make image-test`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from promptrec.broker import EmbeddedBroker
from promptrec.streams.settings import StreamSettings
from tests.pipeline_fixtures import Producer, Recorder, catalog_items, interaction, settings_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAGE = os.environ.get("PROMPTREC_IMAGE", "localhost/promptrec:latest")
ENGINE = os.environ.get("PROMPTREC_ENGINE") or (
    "podman" if shutil.which("podman") or not shutil.which("docker") else "docker"
)
ENGINE_FLAGS = shlex.split(os.environ.get("PROMPTREC_ENGINE_FLAGS", ""))
REQUIRED = os.environ.get("PROMPTREC_IMAGE_TEST_REQUIRED") == "1"
# Model load + catalog replay + group join on a small CPU budget.
READY_TIMEOUT_S = float(os.environ.get("PROMPTREC_IMAGE_READY_TIMEOUT_S", "300"))


def unavailable(reason: str) -> NoReturn:
    """Skip (or, under `make image-test`, fail) because the image cannot be tried here."""
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


def engine(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``ENGINE args...``, output captured."""
    return subprocess.run(
        [ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="module")
def image() -> str:
    """The prebuilt image, once the engine is shown to run a container of it."""
    if shutil.which(ENGINE) is None:
        unavailable(
            f"container engine {ENGINE!r} not found: `make image-tools` installs podman "
            "(Debian package), or set PROMPTREC_ENGINE"
        )
    if engine("image", "inspect", IMAGE).returncode != 0:
        unavailable(
            f"image {IMAGE} not built: `make image` builds it (several minutes; the test suite "
            "does not), or set PROMPTREC_IMAGE to a prebuilt one"
        )
    args = ["run", "--rm", *ENGINE_FLAGS, "--network", "none", "--entrypoint", "true", IMAGE]
    probe = engine(*args)
    if probe.returncode != 0:
        unavailable(
            f"{ENGINE} cannot run a container here (`{shlex.join([ENGINE, *args])}` exited "
            f"{probe.returncode}): {tail(probe.stderr, 5)}. Sandboxes may need "
            "PROMPTREC_ENGINE_FLAGS (make image-test ENGINE_FLAGS=...), see this module's doc"
        )
    return IMAGE


def test_image_encodes_offline_as_the_non_root_user(image: str) -> None:
    # No network at all: the weights are in the image, torch is the CPU build.
    code = (
        "import os, json, torch; from promptrec.encoder import TextEncoder; "
        "v = TextEncoder(device='cpu').encode_many(['a trail map', 'a jazz record']); "
        "print(json.dumps({'shape': list(v.shape), 'uid': os.getuid(), "
        "'cuda': torch.version.cuda, 'offline': os.environ.get('HF_HUB_OFFLINE')}))"
    )
    done = engine(
        "run", "--rm", *ENGINE_FLAGS, "--network", "none", "--entrypoint", "python", image,
        "-c", code, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"shape": [2, 384], "uid": 10001, "cuda": None, "offline": "1"}


@pytest.fixture(scope="module")
def image_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this module alone, on 127.0.0.1 (reached by the container via --network host)."""
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class WorkerContainer:
    """``ENGINE run -d --network host IMAGE worker`` with the settings' broker, topics and port."""

    def __init__(self, image: str, settings: StreamSettings, log_path: Path) -> None:
        self.image = image
        self.settings = settings
        self.log_path = log_path
        self.name = f"promptrec-image-test-{uuid.uuid4().hex[:8]}"
        self.started = False

    def start(self) -> WorkerContainer:
        s = self.settings
        env = {
            "PROMPTREC_BROKER": s.broker,
            "PROMPTREC_TOPIC_PREFIX": s.topic_prefix,
            "PROMPTREC_PARTITIONS": str(s.partitions),
            "PROMPTREC_METRICS_PORT": str(s.metrics_port),
            "PROMPTREC_ENCODER_DEVICE": "cpu",
            "PROMPTREC_LOG_LEVEL": "info",
        }
        flags = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        done = engine(
            "run", "-d", "--name", self.name, "--network", "host", *ENGINE_FLAGS, *flags,
            self.image, "worker",
        )  # fmt: skip
        assert done.returncode == 0, f"{ENGINE} run failed: {tail(done.stderr)}"
        self.started = True
        return self

    @property
    def running(self) -> bool:
        done = engine("inspect", "--format", "{{.State.Running}}", self.name)
        return done.stdout.strip() == "true"

    def logs(self) -> str:
        done = engine("logs", self.name)
        return done.stdout + done.stderr

    def remove(self) -> None:
        if not self.started:
            return
        engine("stop", "--time", "30", self.name, timeout=60)
        self.log_path.write_text(self.logs())
        engine("rm", "--force", "--volumes", self.name)


def http_status(port: int, path: str) -> int | None:
    """Status of ``GET http://127.0.0.1:port/path``; None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def wait_healthy(worker: WorkerContainer, timeout: float) -> dict[str, int | None]:
    """Poll /healthz and /readyz until both answer 200; fail with the container log otherwise."""
    port = worker.settings.metrics_port
    deadline = time.monotonic() + timeout
    status: dict[str, int | None] = {}
    while time.monotonic() < deadline:
        status = {path: http_status(port, path) for path in ("/healthz", "/readyz")}
        if all(code == 200 for code in status.values()):
            return status
        if not worker.running:
            pytest.fail(f"worker container exited; last {status}; log:\n{tail(worker.logs())}")
        time.sleep(1.0)
    pytest.fail(f"not healthy+ready after {timeout:.0f} s: {status}; log:\n{tail(worker.logs())}")


@pytest.mark.timeout(READY_TIMEOUT_S + 240)
def test_worker_container_is_healthy_ready_and_recommends(
    image: str, image_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(image_broker.url, tmp_path / "state", partitions=2)
    producer = Producer(settings)
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    worker = WorkerContainer(image, settings, tmp_path / "worker.log")
    try:
        for item in catalog_items():
            producer.send("items", item["item_id"], item)
        producer.flush()
        started = time.monotonic()
        worker.start()
        assert wait_healthy(worker, READY_TIMEOUT_S) == {"/healthz": 200, "/readyz": 200}
        ready_s = time.monotonic() - started

        event = interaction("u-image", "hiking-0")
        producer.send("interactions", event["user_id"], event)
        producer.flush()
        sent = time.monotonic()

        def answers(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in records if r.get("source_event_id") == event["event_id"]]

        try:
            recs.wait_for(lambda rs: bool(answers(rs)), timeout=120)
            answered_s = time.monotonic() - sent
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log:\n{tail(worker.logs())}") from None
        # Give a duplicate time to show up: one event must give exactly one recommendation.
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            recs.poll()
        found = answers(recs.records)
        assert len(found) == 1, found
        rec = found[0]
        assert rec["user_id"] == "u-image"
        assert rec["source"] == "interaction"
        ids = [i["item_id"] for i in rec["items"]]
        assert len(ids) == settings.top_k
        assert "hiking-0" not in ids
        assert len(recs.records) == 1, recs.records  # fresh topics: nothing else was produced
        print(
            f"{ENGINE} {image}: /healthz and /readyz 200 {ready_s:.1f} s after `run`; "
            f"recommendation {answered_s:.2f} s after the interaction: {ids}"
        )
    finally:
        worker.remove()
        recs.close()
        producer.close()
