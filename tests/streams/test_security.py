"""Security basics: credentials reach every client, no unsafe deserialisation, bound endpoints."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest

from promptrec.streams.catalog_reader import aiokafka_config
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
    "streams/catalog_reader.py",
    "streams/app.py",
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
            "use promptrec.streams.clients.make_* or catalog_reader.aiokafka_config"
        )
