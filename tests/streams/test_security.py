"""Security basics: credentials reach every client, no unsafe deserialisation, bound endpoints."""

from __future__ import annotations

import ast
import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types.auth import SASLMechanism

from promptrec.streams.app import make_app
from promptrec.streams.clients import (
    aiokafka_config,
    make_admin,
    make_aio_consumer,
    make_aio_producer,
    make_consumer,
    make_producer,
)
from promptrec.streams.exceptions import ConfigError
from promptrec.streams.settings import StreamSettings
from tests.streams.test_clients import _sasl_ssl, cafile  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
# Our code; bench/peers drives a third-party library in its own virtualenv.
SOURCES = sorted(
    p
    for tree in ("promptrec", "bench")
    for p in (ROOT / tree).rglob("*.py")
    if "peers" not in p.relative_to(ROOT).parts
)
# Where Kafka clients may be constructed: everything else goes through these factories.
# broker.py probes the embedded (local, plaintext) broker it started itself.
# The client factories, and the embedded broker's own readiness probe (a plaintext loopback
# broker that it starts itself: no security settings apply to it).
CLIENT_FACTORIES = {
    "streams/clients.py",
    "broker/embedded.py",
}
CLIENT_CLASSES = {
    "KafkaProducer",
    "KafkaConsumer",
    "KafkaAdminClient",
    "AIOKafkaConsumer",
    "AIOKafkaProducer",
    "AIOKafkaAdminClient",
}


def _calls(path: Path) -> list[tuple[str, ast.Call]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            )
            owner = (
                f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            )
            out.append((f"{owner}.{name}" if owner else name, node))
    return out


def test_sources_were_found() -> None:
    assert len(SOURCES) > 20


def test_sasl_ssl_reaches_the_aiokafka_readers(cafile: Path) -> None:  # noqa: F811
    config = aiokafka_config(_sasl_ssl(cafile))
    assert config["bootstrap_servers"] == ["k1.example:9093", "k2.example:9093"]
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "alice"
    assert config["sasl_plain_password"] == "s3cret-pw"
    context = config["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert len(context.get_ca_certs()) == 1  # exactly the configured CA bundle


def test_plaintext_readers_have_no_security_extras() -> None:
    config = aiokafka_config(StreamSettings(broker="h:1"))
    assert config == {"bootstrap_servers": ["h:1"], "security_protocol": "PLAINTEXT"}


def _aio_security(client: Any) -> dict[str, Any]:
    """What an aiokafka client (not started) will connect with."""
    return {
        "protocol": client._security_protocol,
        "mechanism": client._sasl_mechanism,
        "user": client._sasl_plain_username,
        "password": client._sasl_plain_password,
        "cas": len(client._ssl_context.get_ca_certs()) if client._ssl_context else None,
    }


def _built_clients(settings: StreamSettings) -> dict[str, dict[str, Any]]:
    """Every kind of client the project builds, from the factories, as its security view."""

    async def aio() -> dict[str, dict[str, Any]]:
        consumer = make_aio_consumer(settings, "test")
        producer = make_aio_producer(settings)
        try:
            return {
                "aiokafka consumer": _aio_security(consumer._client),
                "aiokafka producer": _aio_security(producer.client),
            }
        finally:
            await consumer.stop()
            await producer.stop()

    clients = asyncio.run(aio())
    # api_version given: kafka-python builds the client without contacting the broker.
    for kind, factory in (
        ("kafka-python producer", make_producer),
        ("kafka-python consumer", make_consumer),
    ):
        client = factory(settings, api_version=(2, 5, 0))
        try:
            c = client.config
            cas = None
            if c["ssl_cafile"]:
                cas = len(ssl.create_default_context(cafile=c["ssl_cafile"]).get_ca_certs())
            clients[kind] = {
                "protocol": c["security_protocol"],
                "mechanism": c["sasl_mechanism"],
                "user": c["sasl_plain_username"],
                "password": c["sasl_plain_password"],
                "cas": cas,
            }
        finally:
            client.close()
    creds = make_app(settings).conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    clients["faust app"] = {
        "protocol": str(creds.protocol.value),
        "mechanism": {SASLMechanism.SCRAM_SHA_512: "SCRAM-SHA-512"}.get(creds.mechanism),
        "user": creds.username,
        "password": creds.password,
        "cas": len(creds.ssl_context.get_ca_certs()) if creds.ssl_context else None,
    }
    return clients


def test_sasl_ssl_reaches_every_client_kind(cafile: Path) -> None:  # noqa: F811
    clients = _built_clients(_sasl_ssl(cafile))
    assert set(clients) == {
        "aiokafka consumer",
        "aiokafka producer",
        "kafka-python producer",
        "kafka-python consumer",
        "faust app",
    }
    expected = {
        "protocol": "SASL_SSL",
        "mechanism": "SCRAM-SHA-512",
        "user": "alice",
        "password": "s3cret-pw",
        "cas": 1,  # exactly the configured CA bundle, not the system store
    }
    for kind, seen in clients.items():
        assert seen == expected, kind


_FACTORIES: dict[str, Callable[[StreamSettings], Any]] = {
    "faust app": make_app,
    "aiokafka consumer": lambda s: make_aio_consumer(s, "test"),
    "aiokafka producer": make_aio_producer,
    "kafka-python producer": make_producer,
    "kafka-python consumer": make_consumer,
    "kafka-python admin": make_admin,
}


@pytest.mark.parametrize("kind", sorted(_FACTORIES))
@pytest.mark.parametrize(
    ("fields", "error"),
    [
        # No mechanism: refused everywhere (the aiokafka readers used to assume PLAIN).
        ({"sasl_username": "a", "sasl_password": "p"}, "sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "a"}, "sasl_password"),
        ({"sasl_mechanism": "PLAIN", "sasl_password": "p"}, "sasl_username"),
        ({"ssl_cafile": "/nonexistent/ca.pem", "security_protocol": "SSL"}, "ca.pem"),
        ({"broker": "kafka://", "security_protocol": "PLAINTEXT"}, "names no server"),
    ],
)
def test_bad_security_settings_fail_every_client_kind(
    kind: str, fields: dict[str, Any], error: str
) -> None:
    values: dict[str, Any] = {"broker": "127.0.0.1:1", "security_protocol": "SASL_SSL", **fields}
    settings = StreamSettings(**values)

    async def build() -> None:  # aiokafka clients are built inside a running loop
        _FACTORIES[kind](settings)

    with pytest.raises(ConfigError, match=error):
        asyncio.run(build())


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_deserialisation(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not {"pickle", "cPickle", "marshal", "dill", "shelve"} & set(names), path
    for name, call in _calls(path):
        bare = isinstance(call.func, ast.Name)
        assert not (bare and name in ("eval", "exec")), f"{path}:{call.lineno}: {name}()"
        if name in ("torch.load",):
            kw = {k.arg: k.value for k in call.keywords}
            safe = (
                isinstance(kw.get("weights_only"), ast.Constant)
                and kw["weights_only"].value is True
            )
            assert safe, f"{path}:{call.lineno}: torch.load without weights_only=True"
        if name == "yaml.load":
            raise AssertionError(f"{path}:{call.lineno}: yaml.load (use yaml.safe_load)")
        if name.endswith("from_pretrained"):
            kw = {k.arg for k in call.keywords}
            assert "trust_remote_code" not in kw or all(
                not (
                    k.arg == "trust_remote_code"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value
                )
                for k in call.keywords
            ), f"{path}:{call.lineno}: trust_remote_code"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_kafka_clients_come_from_the_factories(path: Path) -> None:
    if f"{path.parent.name}/{path.name}" in CLIENT_FACTORIES:
        return
    for name, call in _calls(path):
        assert name.split(".")[-1] not in CLIENT_CLASSES, (
            f"{path}:{call.lineno}: {name}() bypasses the security settings; "
            "use promptrec.streams.clients.make_*"
        )
