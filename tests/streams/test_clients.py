"""Client factories: security settings reach kafka-python and Faust; real round trips."""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import faust
import pytest
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import ValidationError

from promptrec.broker.embedded import free_port
from promptrec.streams.clients import (
    faust_app_options,
    faust_credentials,
    kafka_client_config,
    make_admin,
    make_consumer,
    make_producer,
)
from promptrec.streams.exceptions import BrokerError, ConfigError
from promptrec.streams.settings import StreamSettings

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


@pytest.fixture
def cafile(tmp_path: Path) -> Path:
    """A CA bundle holding exactly one (real, public) certificate."""
    certifi = pytest.importorskip("certifi")
    first = _PEM.search(Path(certifi.where()).read_bytes())
    assert first is not None
    path = tmp_path / "ca.pem"
    path.write_bytes(first.group(0))
    return path


def _sasl_ssl(cafile: Path) -> StreamSettings:
    return StreamSettings(
        broker="kafka://k1.example:9093;k2.example:9093",
        app_id="recs",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password="s3cret-pw",  # type: ignore[arg-type]  # pydantic coerces to SecretStr
        ssl_cafile=cafile,
    )


def test_sasl_ssl_reaches_kafka_python_config(cafile: Path) -> None:
    config = kafka_client_config(_sasl_ssl(cafile))
    assert config == {
        "bootstrap_servers": ["k1.example:9093", "k2.example:9093"],
        "client_id": "recs",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "s3cret-pw",
        "ssl_cafile": str(cafile),
    }


def test_sasl_ssl_reaches_faust_credentials(cafile: Path) -> None:
    creds = faust_credentials(_sasl_ssl(cafile))
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "alice"
    assert creds.password == "s3cret-pw"
    assert creds.mechanism == SASLMechanism.SCRAM_SHA_512
    assert creds.protocol == AuthProtocol.SASL_SSL
    assert isinstance(creds.ssl_context, ssl.SSLContext)
    # Exactly the one certificate of our bundle: the cafile was loaded, not the system store.
    assert len(creds.ssl_context.get_ca_certs()) == 1
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_plaintext_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTREC_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("PROMPTREC_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("PROMPTREC_SASL_USERNAME", "bob")
    monkeypatch.setenv("PROMPTREC_SASL_PASSWORD", "env-secret")
    settings = StreamSettings()
    config = kafka_client_config(settings)
    assert config["sasl_plain_password"] == "env-secret"
    assert config["sasl_mechanism"] == "PLAIN"
    assert "ssl_cafile" not in config
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol == AuthProtocol.SASL_PLAINTEXT
    assert creds.ssl_context is None
    assert (creds.username, creds.password) == ("bob", "env-secret")


def test_ssl_only(cafile: Path) -> None:
    settings = StreamSettings(security_protocol="SSL", ssl_cafile=cafile)
    config = kafka_client_config(settings)
    assert config["ssl_cafile"] == str(cafile)
    assert not any(key.startswith("sasl") for key in config)
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SSLCredentials)
    assert len(creds.context.get_ca_certs()) == 1


def test_plaintext_has_no_security_extras() -> None:
    # Stray SASL fields (e.g. left in the environment) must not leak into a plaintext client.
    settings = StreamSettings(
        broker="127.0.0.1:9092",
        sasl_username="alice",
        sasl_password="unused",  # type: ignore[arg-type]
    )
    config = kafka_client_config(settings)
    assert config == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "client_id": "promptrec",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(settings) is None


def test_password_hidden_in_repr(cafile: Path) -> None:
    settings = _sasl_ssl(cafile)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cret-pw" not in text
    assert "s3cret-pw" not in repr(faust_credentials(settings))


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"sasl_username": "a", "sasl_password": "p"}, "sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "a"}, "sasl_password"),
        ({"sasl_mechanism": "PLAIN", "sasl_password": "p"}, "sasl_username"),
    ],
)
def test_incomplete_sasl_is_a_config_error(fields: dict[str, str], missing: str) -> None:
    settings = StreamSettings(security_protocol="SASL_SSL", **fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=missing):
        kafka_client_config(settings)
    with pytest.raises(ConfigError, match=missing):
        faust_credentials(settings)


def test_missing_cafile_is_a_config_error(tmp_path: Path) -> None:
    settings = StreamSettings(security_protocol="SSL", ssl_cafile=tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        kafka_client_config(settings)
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        faust_credentials(settings)


def test_empty_broker_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="names no server"):
        kafka_client_config(StreamSettings(broker="kafka://"))


def test_faust_producer_batch_setting_reaches_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPTREC_PRODUCER_BATCH_BYTES", raising=False)
    assert faust_app_options(StreamSettings())["producer_max_batch_size"] == 16384  # the default
    monkeypatch.setenv("PROMPTREC_PRODUCER_BATCH_BYTES", "1")  # one record per request
    assert faust_app_options(StreamSettings())["producer_max_batch_size"] == 1
    for bad in ("0", "-5", "lots"):
        monkeypatch.setenv("PROMPTREC_PRODUCER_BATCH_BYTES", bad)
        with pytest.raises(ValidationError, match="producer_batch_bytes"):
            StreamSettings()


def test_unreachable_broker_is_a_broker_error() -> None:
    settings = StreamSettings(broker=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(BrokerError, match="cannot reach"):
        make_admin(settings, bootstrap_timeout_ms=1000)
    assert time.monotonic() - started < 5.0


@pytest.mark.integration
def test_producer_consumer_round_trip(
    make_settings: Callable[..., StreamSettings], group_id: Callable[[], str]
) -> None:
    settings = make_settings()
    topic = f"{settings.topic_prefix}roundtrip"
    admin = make_admin(settings)
    try:
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    finally:
        admin.close()
    producer = make_producer(settings)
    assert producer.config["acks"] == -1  # "all"
    sent = [(f"user-{i}".encode(), f'{{"n": {i}}}'.encode()) for i in range(20)]
    for key, value in sent:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=10)
    producer.close()

    consumer = make_consumer(settings, topic, group_id=group_id())
    assert consumer.config["session_timeout_ms"] == 10000
    received: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 20
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received += [(r.key, r.value) for r in records]
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)
