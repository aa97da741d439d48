"""A benchmark cluster on this machine: embedded broker, one worker process, producer processes,
and a consumer of the recommendations topic.

The worker is the real ``python -m promptrec worker`` (same command the tests' ``WorkerProcess``
and the demo use). Its CPU time and memory are read from ``/proc``; its readiness and catalog
progress from its Prometheus endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.common import cpu_seconds, rss_bytes
from promptrec.broker.embedded import EmbeddedBroker, free_port
from promptrec.streams.clients import make_consumer, make_producer
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics

__all__ = ["Cluster", "WorkerError", "scrape_metrics", "stop_process", "worker_command"]

# Prometheus samples: (name, sorted label pairs) -> value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class WorkerError(RuntimeError):
    """The worker exited or did not become ready; the message ends with its log tail."""


def _die_with_parent() -> None:
    # Linux: children get SIGTERM if the benchmark dies, even on kill -9; no orphans.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def worker_command(
    settings: StreamSettings, log_level: str = "info", extra: Sequence[str] = ()
) -> list[str]:
    """``python -m promptrec worker`` on the settings' broker, topics, state and metrics port.

    The benchmark cluster and the tests' ``WorkerProcess`` both start this command.
    """
    s = settings
    return [
        sys.executable, "-m", "promptrec", "worker",
        "--broker", s.broker, "--topic-prefix", s.topic_prefix,
        "--state-dir", str(s.state_dir), "--metrics-port", str(s.metrics_port),
        "--log-level", log_level, *extra,
    ]  # fmt: skip


def scrape_metrics(port: int) -> Samples:
    """All samples of the Prometheus endpoint on ``127.0.0.1:port``."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM ``proc`` if it still runs and wait (SIGKILL after ``timeout`` s); its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


class Cluster:
    """Broker + worker + helpers; use as a context manager (everything stops on exit).

    Args:
        worker_env: Extra environment of the worker (e.g. ``PROMPTREC_BATCH_SIZE=256``).
        worker_args: Extra command-line arguments of the worker (``--device cpu``).
        partitions: Partitions of the keyed topics.
    """

    def __init__(
        self,
        worker_env: dict[str, str] | None = None,
        worker_args: Sequence[str] = (),
        partitions: int = 4,
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="promptrec-bench-"))
        self.broker = EmbeddedBroker(log_path=self.tmp / "broker.log")
        self.worker_env = {"PROMPTREC_PARTITIONS": str(partitions), **(worker_env or {})}
        self.worker_args = list(worker_args)
        self.partitions = partitions
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings: StreamSettings | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.broker.start()
        self.settings = StreamSettings(
            broker=self.broker.url,
            topic_prefix=f"b{uuid.uuid4().hex[:8]}.",
            state_dir=self.tmp / "state",
            metrics_port=free_port(),
            partitions=self.partitions,
        )
        ensure_topics(self.settings)
        self.names = TopicNames.from_settings(self.settings)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_worker()
        self.broker.stop()
        if os.environ.get("PROMPTREC_BENCH_KEEP"):
            print(f"kept {self.tmp} (worker.log, broker.log, state)")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start_worker(self) -> int:
        """Start the worker process; returns its pid."""
        cmd = worker_command(self._s, "warn", self.worker_args)
        log = open(self.tmp / "worker.log", "ab")  # noqa: SIM115 - owned by the child
        env = {**os.environ, **self.worker_env}
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
        )
        return self.proc.pid

    def stop_worker(self) -> None:
        """SIGTERM the worker and wait (kill after 30 s)."""
        if self.proc is not None:
            stop_process(self.proc, timeout=30)

    # -- worker probes ------------------------------------------------------------------------

    @property
    def _s(self) -> StreamSettings:
        if self.settings is None:
            raise RuntimeError("cluster not started")
        return self.settings

    @property
    def pid(self) -> int:
        """The worker's pid."""
        if self.proc is None:
            raise RuntimeError("worker not started")
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise :class:`WorkerError` with the log tail when the worker has exited."""
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerError(f"worker exited; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the worker log."""
        try:
            text = (self.tmp / "worker.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def metrics(self) -> Samples:
        """All samples of the worker's Prometheus endpoint."""
        return scrape_metrics(self._s.metrics_port)

    def catalog_done(self) -> int:
        """Catalog records (items + users) the worker has applied or dead-lettered."""
        total = 0.0
        for (name, labels), value in self.metrics().items():
            topic = dict(labels).get("topic")
            if name == "promptrec_events_total" and topic in ("items", "users"):
                total += value
        return int(total)

    def wait_metric(self, predicate: Any, timeout: float, what: str) -> float:
        """Poll the metrics endpoint until ``predicate(self)`` holds; returns seconds waited."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            self.check_alive()
            try:
                if predicate(self):
                    return time.perf_counter() - t0
            except OSError:
                pass  # endpoint not up yet
            time.sleep(0.2)
        raise WorkerError(f"{what}: not reached after {timeout:.0f} s; log:\n{self.log_tail()}")

    def cpu(self) -> float:
        """Worker CPU seconds so far."""
        return cpu_seconds(self.pid)

    def rss(self) -> tuple[int, int]:
        """Worker ``(current, peak)`` RSS in bytes."""
        return rss_bytes(self.pid)

    # -- producers and consumers --------------------------------------------------------------

    def _command(self, module: str, *positional: str, **options: Any) -> list[str]:
        s = self._s
        cmd = [sys.executable, "-m", module, *positional, "--broker", s.broker]
        cmd += ["--topic-prefix", s.topic_prefix]
        for key, value in options.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        return cmd

    def run_module(
        self,
        module: str,
        timeout: float,
        *positional: str,
        worker_env: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """Run ``python -m MODULE ... --broker B --topic-prefix P --KEY VALUE...`` to completion.

        ``worker_env``: with the worker's extra environment (its settings). Returns the JSON
        summary on the last line of its stdout.
        """
        env = {**os.environ, **self.worker_env} if worker_env else None
        done = subprocess.run(
            self._command(module, *positional, **options), env=env,
            capture_output=True, timeout=timeout, check=False, preexec_fn=_die_with_parent,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{module} {' '.join(positional)} failed:\n"
                               f"{done.stderr.decode()[-3000:]}")  # fmt: skip
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    def run_producer(self, phase: str, timeout: float, **options: Any) -> dict[str, Any]:
        """Run ``python -m bench.producer PHASE`` to completion; returns its JSON summary."""
        return self.run_module("bench.producer", timeout, phase, **options)

    def start_producer(self, phase: str, **options: Any) -> subprocess.Popen[bytes]:
        """Start ``python -m bench.producer PHASE`` in the background."""
        return subprocess.Popen(
            self._command("bench.producer", phase, **options),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
        )  # fmt: skip

    def producer(self) -> KafkaProducer:
        """A low-latency producer for the driver's own records (requests, probe items)."""
        return make_producer(self._s, acks=1, linger_ms=0)

    def recommendations_consumer(self, from_end: bool = True) -> KafkaConsumer:
        """A group-less consumer of every recommendations partition."""
        consumer = make_consumer(self._s, fetch_max_wait_ms=10, max_poll_records=5000)
        tps = [TopicPartition(self.names.recommendations, p) for p in range(self.partitions)]
        consumer.assign(tps)
        if from_end:
            consumer.seek_to_end(*tps)
            for tp in tps:
                consumer.position(tp)  # resolve now, not at the first poll
        else:
            consumer.seek_to_beginning(*tps)
        return consumer

    def warm_up(self, producer: KafkaProducer, consumer: KafkaConsumer, timeout: float) -> float:
        """Request one recommendation and wait for it: the whole path (group join) is up."""
        t0 = time.perf_counter()
        request_id = f"warm-up-{time.time_ns()}"
        while time.perf_counter() - t0 < timeout:
            self.check_alive()
            value = {
                "request_id": request_id,
                "user_id": "bench-warm-up",
                "ts": int(time.time() * 1000),
            }
            producer.send(
                self.names.requests, key=b"bench-warm-up", value=json.dumps(value).encode()
            )
            producer.flush()
            until = time.perf_counter() + 5.0
            while time.perf_counter() < until:
                for records in consumer.poll(timeout_ms=200).values():
                    for r in records:
                        if json.loads(r.value).get("source_event_id") == request_id:
                            return time.perf_counter() - t0
        raise WorkerError(f"no warm-up recommendation after {timeout:.0f} s:\n{self.log_tail()}")

    def load_catalog(
        self, items: int, users: int, profiles: bool, seed: int, timeout: float
    ) -> dict[str, float]:
        """Publish the catalog from a producer process and wait until the worker encoded it all.

        Returns publish seconds and encode seconds (first record published -> last applied).
        """
        t0 = time.perf_counter()
        before = self.catalog_done()
        sent = self.run_producer(
            "catalog", timeout=timeout, items=items, users=users, seed=seed, profiles=int(profiles)
        )
        expected = before + int(sent["items"]) + int(sent["users"])
        self.wait_metric(lambda c: c.catalog_done() >= expected, timeout, "catalog encode")
        total = time.perf_counter() - t0
        texts = int(sent["items"]) + int(sent["users"])
        return {
            "items": int(sent["items"]),
            "user_profiles": int(sent["users"]),
            "publish_s": float(sent["seconds"]),
            "encode_s": total,
            "texts_per_s": texts / total if total > 0 else 0.0,
        }
