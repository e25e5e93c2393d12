"""The kit's Kafka clients over TLS with SCRAM-SHA-512, as the prod overlay runs them: a real
broker with a SASL_SSL listener (a certificate of a CA made here, SCRAM users) and ACL
authorization, and the kit's producer, admin (ensure_topics) and consumer configured by the
FUNNEL_KAFKA_* settings only. A wrong password and an unknown CA are refused; stage-tracker's
KafkaUser ACLs, as the prod overlay renders them, allow what its code does and nothing else."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.admin import CreateAclsRequest_v1
from aiokafka.protocol.api import Request
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from funnel_devstack.kafka import KafkaBroker, default_cache_dir, ensure_kafka_jars, new_cluster_id
from funnel_devstack.ports import free_port
from funnel_servicekit.kafka import client_security, create_producer, ensure_topics
from tests.deploy.rendering import Manifest, named, render

pytestmark = pytest.mark.integration

USER, PASSWORD = "funnel-operator", "scram-secret-of-the-test"  # a super user
SERVICE, SERVICE_PASSWORD = "stage-tracker", "scram-secret-of-the-service"


def _pem_pair(folder: Path, name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0] if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (folder / f"{name}.crt").write_bytes(cert_pem)
    return subject, key, key_pem + cert_pem


class ScramBroker(KafkaBroker):
    """A devstack broker whose storage is formatted with a SCRAM user."""

    def _format_storage(self, log4j: Path) -> None:
        cmd = [
            *self._java(log4j, heap=False), "kafka.tools.StorageTool", "format",
            "-t", new_cluster_id(), "-c", str(self.properties_file), "--ignore-formatted",
            "--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
            "--add-scram", f"SCRAM-SHA-512=[name={SERVICE},password={SERVICE_PASSWORD}]",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)


SECURE_BROKERS: dict[str, str] = {}  # SASL_SSL address -> the same broker's plaintext one


@pytest.fixture(scope="module")
def certificates() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="funnel-tls-"))
    ca_name, ca_key, _ = _pem_pair(folder, "ca", None)
    _, _, broker_pem = _pem_pair(folder, "broker", (ca_name, ca_key))
    (folder / "broker.pem").write_bytes(broker_pem)
    _pem_pair(folder, "other-ca", None)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
async def secure_broker(certificates: Path) -> AsyncIterator[str]:
    sasl_port = free_port()
    port, controller = free_port(), free_port()
    broker = ScramBroker(
        Path(tempfile.mkdtemp(prefix="funnel-scram-")),
        port,
        controller,
        ensure_kafka_jars(default_cache_dir()),
        extra_properties={
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},"
            f"SECURE://127.0.0.1:{sasl_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},SECURE://127.0.0.1:{sasl_port}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SECURE:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.secure.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # The plaintext listener and the controller (the broker itself, the fixtures).
            "super.users": f"User:ANONYMOUS;User:{USER}",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certificates / "broker.pem"),
        },
    )
    broker.start()
    try:
        await broker.wait_ready()
        SECURE_BROKERS[f"127.0.0.1:{sasl_port}"] = broker.bootstrap_servers
        yield f"127.0.0.1:{sasl_port}"
    finally:
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)


@pytest.fixture
def secure_env(monkeypatch: pytest.MonkeyPatch, certificates: Path) -> None:
    monkeypatch.setenv("FUNNEL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_USERNAME", USER)
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("FUNNEL_KAFKA_SSL_CAFILE", str(certificates / "ca.crt"))


@pytest.mark.usefixtures("secure_env")
async def test_the_kit_creates_topics_produces_and_consumes_over_tls_with_scram(
    secure_broker: str,
) -> None:
    created = await ensure_topics(secure_broker, 1, 1)
    assert "funnel.lead-events" in created
    assert await ensure_topics(secure_broker, 1, 1) == []  # listed: they exist now
    producer = create_producer(secure_broker, "scram-test")
    await producer.start()
    payload = uuid.uuid4().bytes
    try:
        await producer.send_and_wait("funnel.lead-events", payload, key=b"lead-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "funnel.lead-events",
        bootstrap_servers=secure_broker,
        group_id="scram-test",
        auto_offset_reset="earliest",
        **client_security(),
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=15000)
        values = [r.value for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    assert values == [payload]


@pytest.mark.usefixtures("secure_env")
async def test_a_wrong_password_and_an_unknown_ca_are_refused(
    secure_broker: str, monkeypatch: pytest.MonkeyPatch, certificates: Path
) -> None:
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_PASSWORD", "not-the-password")
    producer = create_producer(secure_broker, "scram-test-bad")
    with pytest.raises((KafkaError, KafkaConnectionError, OSError)):
        await producer.start()
    await producer.stop()
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("FUNNEL_KAFKA_SSL_CAFILE", str(certificates / "other-ca.crt"))
    producer = create_producer(secure_broker, "scram-test-bad-ca")
    with pytest.raises((KafkaError, KafkaConnectionError, OSError)):
        await producer.start()
    await producer.stop()


# Kafka's AclOperation, ResourceType, PatternType and AclPermissionType codes.
OPERATIONS = {"Read": 3, "Write": 4, "Describe": 8}
RESOURCE_TYPES = {"topic": 2, "group": 3}
PATTERNS = {"literal": 3, "prefix": 4}
ALLOW = 3


class CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, creations: list[tuple[int, str, int, str, str, int, int]]) -> None:
        self.creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self.creations)


async def _grant(plaintext: str, user: Manifest) -> None:
    """The KafkaUser's ACLs, as Strimzi's User Operator creates them."""
    creations = [
        (
            RESOURCE_TYPES[acl["resource"]["type"]],
            acl["resource"]["name"],
            PATTERNS[acl["resource"]["patternType"]],
            f"User:{user['metadata']['name']}",
            "*",
            OPERATIONS[op],
            ALLOW,
        )
        for acl in user["spec"]["authorization"]["acls"]
        for op in acl["operations"]
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=plaintext)
    await admin.start()
    try:
        response = await admin._client.send(admin._client.get_random_node(), CreateAcls(creations))
    finally:
        await admin.close()
    assert [r[0] for r in response.creation_responses] == [0] * len(creations)


async def test_a_service_s_kafka_user_may_do_what_its_code_does_and_nothing_else(
    secure_broker: str, monkeypatch: pytest.MonkeyPatch, certificates: Path
) -> None:
    plaintext = SECURE_BROKERS[secure_broker]
    await ensure_topics(plaintext, 1, 1)
    user = named(render("prod"), "KafkaUser", SERVICE)
    await _grant(plaintext, user)
    monkeypatch.setenv("FUNNEL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_USERNAME", SERVICE)
    monkeypatch.setenv("FUNNEL_KAFKA_SASL_PASSWORD", SERVICE_PASSWORD)
    monkeypatch.setenv("FUNNEL_KAFKA_SSL_CAFILE", str(certificates / "ca.crt"))
    # Its outbox relay (idempotent producer) and its dead letters.
    producer = create_producer(secure_broker, SERVICE)
    await producer.start()
    try:
        await producer.send_and_wait("funnel.stage-events", b"moved", key=b"lead-1")
        await producer.send_and_wait("funnel.stage-commands", b"move", key=b"lead-1")
        await producer.send_and_wait("funnel.lead-events.dlq", b"poison", key=b"lead-1")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait("funnel.lead-events", b"not mine", key=b"lead-1")
    finally:
        await producer.stop()
    # Its consumer group, on the topics it consumes, committing offsets.
    consumer = AIOKafkaConsumer(
        "funnel.stage-commands",
        bootstrap_servers=secure_broker,
        group_id=SERVICE,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_security(),
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=15000)
        assert [r.value for records in batch.values() for r in records] == [b"move"]
        await consumer.commit()
    finally:
        await consumer.stop()
    # Another group is not its own.
    stranger = AIOKafkaConsumer(
        "funnel.stage-commands",
        bootstrap_servers=secure_broker,
        group_id="reporting",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_security(),
    )
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await stranger.start()
    finally:
        await stranger.stop()
