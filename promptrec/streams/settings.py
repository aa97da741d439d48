"""Worker settings: broker, topics, batching, state, limits, metrics, Kafka security."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from promptrec.events.schemas import DEFAULT_MAX_TEXT_CHARS, Limits
from promptrec.serving.settings import ServingSettings

__all__ = ["StreamSettings"]


class StreamSettings(ServingSettings):
    """Settings of the ``promptrec.streams`` package (env prefix ``PROMPTREC_``).

    It extends :class:`~promptrec.serving.settings.ServingSettings`, so one object (and one
    environment) configures a worker.
    """

    model_config = SettingsConfigDict(env_prefix="PROMPTREC_", extra="ignore")

    broker: str = Field(
        default="kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers, `kafka://host:port[;host:port]` or `host:port,...`.",
    )
    app_id: str | None = Field(
        default=None,
        description="Faust app id (consumer group, changelog topics); default: the topic prefix.",
    )
    topic_prefix: str = Field(default="promptrec.", description="Prefix of every topic name.")
    partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of keyed topics (>= number of workers)."
    )
    replication_factor: int = Field(default=1, ge=1, description="Replication of created topics.")
    batch_size: int = Field(default=64, ge=1, le=10000, description="Micro-batch size of agents.")
    batch_within_ms: int = Field(
        default=20, ge=1, le=60000, description="Micro-batch time limit in milliseconds."
    )
    fault_injection: str = Field(
        default="",
        description="Testing aid, keep empty in production: `stage=N,...` fails the first N "
        "runs of a batch stage (encode, recommend, learn, checkpoint, sync).",
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address of the metrics endpoint.")
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Prometheus endpoint port; 0 disables it."
    )
    lag_poll_interval_s: float = Field(
        default=15.0,
        ge=0,
        description="Seconds between consumer-lag polls (promptrec_consumer_lag); 0 disables.",
    )
    stall_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="Seconds an input partition may stay behind the fetch high watermark, "
        "fetched but with a position that does not move, before the watchdog counts a stall "
        "(promptrec_partition_stalls_total) and recovers it (seek back, then rejoin); 0 disables.",
    )
    emulate_midbatch_fetch_bug: bool = Field(
        default=False,
        description="Testing aid, keep off: input-topic fetches drop the record batches that "
        "start below the fetch offset, as Tansu v0.6.0 did (tests the stall watchdog).",
    )
    emulate_slow_seek_s: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="Testing aid, keep at 0: the consumer's seek to the committed offsets at the "
        "end of a rebalance waits this long first, which widens faust-streaming's hand-over race "
        "(tests the fix in promptrec.streams.recovery).",
    )
    liveness_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="`/healthz` fails once the worker's event loop has not ticked for this long.",
    )
    session_timeout_s: float = Field(
        default=10.0, gt=0, description="Consumer-group session timeout (seconds)."
    )
    heartbeat_interval_s: float = Field(
        default=1.0, gt=0, description="Consumer-group heartbeat interval (seconds)."
    )
    rebalance_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Consumer-group rebalance timeout (s); the embedded broker waits this long.",
    )
    catalog_ready_timeout_s: float = Field(
        default=60.0, ge=0, description="Max wait for the catalog replay before serving."
    )
    min_event_ts: int = Field(
        default=946684800000,
        description="Oldest accepted event time (epoch ms); older events are dead-lettered.",
    )
    max_future_skew_s: float = Field(
        default=86400.0, ge=0, description="How far in the future an event time may lie."
    )
    max_event_bytes: int = Field(
        default=65536, ge=256, description="Largest accepted event value in bytes."
    )
    max_item_bytes: int = Field(
        default=262144, ge=256, description="Largest accepted catalog/user record in bytes."
    )
    dead_letter_max_bytes: int = Field(
        default=262144,
        ge=1024,
        description="Raw bytes kept in a dead-letter record; longer values are cut and flagged.",
    )
    fetch_max_wait_ms: int = Field(
        default=20,
        ge=1,
        le=60000,
        description="Longest a consumer fetch waits on the broker (bounds idle latency).",
    )
    faust_fast_path: bool = Field(
        default=True,
        description="Faust's fetch loop awaits each message's hand-off directly instead of "
        "racing it against a flow-suspend wait (two tasks per message), and Faust's sensor hooks "
        "(app.monitor counters, unused) are no-ops; false: stock Faust.",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Move the worker's long-lived objects (model, libraries, replayed catalog) "
        "out of the garbage collector's reach (gc.freeze) after start-up and after the replays, "
        "so full collections walk only what the event path allocates.",
    )
    compute_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="torch/FAISS threads of the per-event path (head, search, learning); "
        "catalog encoding uses PROMPTREC_ENCODER_TORCH_THREADS (0 = all cores).",
    )
    recommendations_batch_bytes: int = Field(
        default=262144,
        ge=1,
        description="Batch size of the recommendations producer (its own aiokafka producer, "
        "awaited once per micro-batch).",
    )
    producer_batch_bytes: int = Field(
        default=16384,
        ge=1,
        description=(
            "Batch size of the worker's Faust producer (history changelog, dead letters, model "
            "updates); 1: one record per request, which costs ~13 % more worker CPU per event "
            "(README 'Round 6')."
        ),
    )
    log_level: Literal["debug", "info", "warn", "error"] = Field(
        default="info", description="Worker log level."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (secret).")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle for SSL.")

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(value) <= allowed:
            raise ValueError("topic_prefix may hold only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("fault_injection")
    @classmethod
    def _valid_faults(cls, value: str) -> str:
        _parse_faults(value)
        return value

    @property
    def faults(self) -> dict[str, int]:
        """``fault_injection`` parsed: stage -> number of runs that fail."""
        return _parse_faults(self.fault_injection)

    @property
    def bootstrap_servers(self) -> list[str]:
        """The broker setting as a list of ``host:port`` strings."""
        raw = self.broker
        if "://" in raw:
            raw = raw.split("://", 1)[1]
        servers = [s.strip() for s in raw.replace(";", ",").split(",") if s.strip()]
        if not servers:
            raise ValueError(f"broker setting {self.broker!r} names no server")
        return servers

    def limits(self, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> Limits:
        """Decoding limits of every topic; ``max_text_chars`` is the encoder's text budget
        (``PROMPTREC_ENCODER_MAX_TEXT_CHARS``), so item text is never cut shorter than the
        encoder would read it."""
        return Limits(
            max_bytes=self.max_event_bytes,
            min_ts=self.min_event_ts,
            max_future_ms=round(self.max_future_skew_s * 1000),
            max_k=self.max_k,
            max_text_chars=max_text_chars,
            max_item_bytes=self.max_item_bytes,
            **self.filter_limits(),
        )

    @property
    def effective_app_id(self) -> str:
        """The Faust app id: ``app_id`` or, when unset, the topic prefix without its separator."""
        return self.app_id or self.topic_prefix.rstrip("._-") or "promptrec"


_FAULT_STAGES = ("encode", "recommend", "learn", "checkpoint", "sync")


def _parse_faults(text: str) -> dict[str, int]:
    """``stage=N,...`` as ``{stage: N}``; a blank string means no faults.

    Raises:
        ValueError: An empty entry, an entry without ``=``, an unknown stage, an N that is not a
            whole number in 0..999999999, or a stage named twice.
    """
    faults: dict[str, int] = {}
    if not text.strip():
        return faults
    stages = ", ".join(_FAULT_STAGES)
    for part in text.split(","):
        entry = part.strip()
        stage, sep, count = (s.strip() for s in entry.partition("="))
        if not entry:
            raise ValueError(f"fault_injection {text!r} has an empty entry (stray ',')")
        if not sep:
            raise ValueError(f"fault_injection entry {entry!r} is not stage=N")
        if stage not in _FAULT_STAGES:
            raise ValueError(f"fault_injection stage {stage!r} is unknown; stages: {stages}")
        # isascii: str.isdigit also accepts digits such as '²' that int() rejects or reads oddly.
        if not (count.isascii() and count.isdigit()) or len(count) > 9:
            raise ValueError(
                f"fault_injection count {count!r} of stage {stage!r} is not a whole number "
                "in 0..999999999"
            )
        if stage in faults:
            raise ValueError(f"fault_injection names stage {stage!r} twice")
        faults[stage] = int(count)
    return faults
