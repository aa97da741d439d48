"""Kafka client factories: every producer, consumer and admin client of the project comes from here.

Centralising construction means the security settings (SASL, SSL) of ``StreamSettings`` and their
checks reach every connection: kafka-python clients (admin, tools, tests), aiokafka clients (the
topic followers, the recommendations publisher) and the Faust app alike.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from promptrec.streams.exceptions import BrokerError, ConfigError
from promptrec.streams.settings import StreamSettings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from faust.types.auth import CredentialsT

__all__ = [
    "aiokafka_config",
    "faust_app_options",
    "faust_credentials",
    "kafka_client_config",
    "make_admin",
    "make_aio_consumer",
    "make_aio_producer",
    "make_consumer",
    "make_producer",
]

_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


def _check_security(settings: StreamSettings) -> None:
    """Raises ConfigError when the security fields do not fit the protocol."""
    protocol = settings.security_protocol
    if protocol in _SASL_PROTOCOLS:
        missing = [
            name
            for name, value in (
                ("sasl_mechanism", settings.sasl_mechanism),
                ("sasl_username", settings.sasl_username),
                ("sasl_password", settings.sasl_password),
            )
            if value is None
        ]
        if missing:
            raise ConfigError(f"security_protocol {protocol} needs {', '.join(missing)}")
    cafile = settings.ssl_cafile
    if protocol in _SSL_PROTOCOLS and cafile is not None and not cafile.is_file():
        raise ConfigError(f"ssl_cafile {settings.ssl_cafile} is not a readable file")


def kafka_client_config(settings: StreamSettings) -> dict[str, Any]:
    """Connection and security options for any kafka-python client.

    Only keys that apply are present: SASL keys only for SASL protocols, ``ssl_cafile`` only for
    SSL protocols. The SASL password is revealed here and nowhere else.

    Raises:
        ConfigError: The broker setting names no server, or SASL/SSL settings are incomplete.
    """
    _check_security(settings)
    config: dict[str, Any] = {
        "bootstrap_servers": _servers(settings),
        "client_id": settings.effective_app_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in _SASL_PROTOCOLS:
        assert settings.sasl_password is not None  # checked by _check_security
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    if settings.security_protocol in _SSL_PROTOCOLS and settings.ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.ssl_cafile)
    return config


def _servers(settings: StreamSettings) -> list[str]:
    try:
        return settings.bootstrap_servers
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _ssl_context(settings: StreamSettings) -> ssl.SSLContext:
    cafile = str(settings.ssl_cafile) if settings.ssl_cafile is not None else None
    try:
        # With a cafile only that bundle is trusted; without one, the system store.
        return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load ssl_cafile {cafile}: {exc}") from exc


def faust_credentials(settings: StreamSettings) -> CredentialsT | None:
    """Faust ``broker_credentials`` built from the same settings (None for PLAINTEXT).

    Raises:
        ConfigError: SASL/SSL settings are incomplete or the CA file cannot be loaded.
    """
    _check_security(settings)
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    import faust  # local: Faust is heavy and only the worker needs it

    if protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(settings))
    assert settings.sasl_password is not None  # checked by _check_security
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        mechanism=settings.sasl_mechanism,
        ssl_context=_ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def _build(factory: Any, kind: str, settings: StreamSettings, options: dict[str, Any]) -> Any:
    try:
        return factory(**options)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka broker {settings.broker} ({kind}): {exc}") from exc


def make_producer(settings: StreamSettings, **overrides: Any) -> KafkaProducer:
    """A KafkaProducer sending raw bytes (keys and values), ``acks="all"``.

    Args:
        settings: Connection and security settings.
        **overrides: Any KafkaProducer option; wins over the defaults here.

    Raises:
        ConfigError: Invalid security settings.
        BrokerError: The broker cannot be reached within the bootstrap timeout.
    """
    options: dict[str, Any] = {
        **kafka_client_config(settings),
        "acks": "all",
        # A few ms of batching cuts requests a lot for replayed streams, costs little latency.
        "linger_ms": 5,
    }
    options.update(overrides)
    producer: KafkaProducer = _build(KafkaProducer, "producer", settings, options)
    return producer


def make_consumer(
    settings: StreamSettings, *topics: str, group_id: str | None = None, **overrides: Any
) -> KafkaConsumer:
    """A KafkaConsumer of raw bytes subscribed to ``topics`` (full topic names).

    Without ``group_id`` the consumer commits nothing; with one it joins the group using the
    session and heartbeat timeouts of the settings. Reads from the earliest offset by default.

    Args:
        settings: Connection, security and group-timeout settings.
        *topics: Topics to subscribe to (none: assign later).
        group_id: Consumer group, or None for a standalone consumer.
        **overrides: Any KafkaConsumer option; wins over the defaults here.

    Raises:
        ConfigError: Invalid security settings.
        BrokerError: The broker cannot be reached within the bootstrap timeout.
    """
    options: dict[str, Any] = {
        **kafka_client_config(settings),
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": group_id is not None,
        "session_timeout_ms": int(settings.session_timeout_s * 1000),
        "heartbeat_interval_ms": int(settings.heartbeat_interval_s * 1000),
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }
    options.update(overrides)
    consumer: KafkaConsumer = _build(KafkaConsumer, "consumer", settings, options)
    if topics:
        consumer.subscribe(list(topics))
    return consumer


def make_admin(settings: StreamSettings, **overrides: Any) -> KafkaAdminClient:
    """A KafkaAdminClient for topic management.

    Raises:
        ConfigError: Invalid security settings.
        BrokerError: The broker cannot be reached within the bootstrap timeout.
    """
    options: dict[str, Any] = {**kafka_client_config(settings), **overrides}
    admin: KafkaAdminClient = _build(KafkaAdminClient, "admin client", settings, options)
    return admin


def aiokafka_config(settings: StreamSettings) -> dict[str, Any]:
    """Connection and security options for any aiokafka client (the same checks as
    :func:`kafka_client_config`; aiokafka takes an ``ssl_context`` instead of a CA file).

    Raises:
        ConfigError: The broker setting names no server, SASL/SSL settings are incomplete or the
            CA file cannot be loaded.
    """
    _check_security(settings)
    protocol = settings.security_protocol
    config: dict[str, Any] = {
        "bootstrap_servers": _servers(settings),
        "security_protocol": protocol,
    }
    if protocol in _SSL_PROTOCOLS:
        config["ssl_context"] = _ssl_context(settings)
    if protocol in _SASL_PROTOCOLS:
        assert settings.sasl_password is not None  # checked by _check_security
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return config


def make_aio_producer(settings: StreamSettings, **overrides: Any) -> AIOKafkaProducer:
    """An aiokafka producer (not started), ``acks="all"``; ``overrides`` win.

    Raises:
        ConfigError: Invalid security settings.
    """
    from aiokafka import AIOKafkaProducer  # local: only the worker needs aiokafka

    options: dict[str, Any] = {
        "client_id": f"{settings.effective_app_id}-publisher",
        "acks": "all",
        **aiokafka_config(settings),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_aio_consumer(settings: StreamSettings, name: str, **overrides: Any) -> AIOKafkaConsumer:
    """A standalone aiokafka consumer (no group, no commits; not started) named ``name``.

    Raises:
        ConfigError: Invalid security settings.
    """
    from aiokafka import AIOKafkaConsumer

    options: dict[str, Any] = {
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "client_id": f"{settings.effective_app_id}-{name}",
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        # A single record may be as large as the biggest accepted input plus framing; bigger
        # ones still arrive (the broker returns at least one batch).
        "max_partition_fetch_bytes": max(1 << 20, settings.max_event_bytes * 2),
        **aiokafka_config(settings),
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


def faust_app_options(settings: StreamSettings) -> dict[str, Any]:
    """The broker, security, group and producer options of the worker's Faust app.

    Raises:
        ConfigError: The broker setting names no server, or invalid security settings.
    """
    return {
        "broker": ";".join(f"kafka://{s}" for s in _servers(settings)),
        "broker_credentials": faust_credentials(settings),
        # Short group timeouts: the embedded broker holds joins for the whole rebalance timeout.
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.heartbeat_interval_s,
        "broker_rebalance_timeout": settings.rebalance_timeout_s,
        "consumer_auto_offset_reset": "earliest",
        "consumer_max_fetch_size": 4 * 1024 * 1024,
        "producer_acks": -1,
        "producer_linger": 0.001,
        "producer_max_batch_size": settings.producer_batch_bytes,
    }
