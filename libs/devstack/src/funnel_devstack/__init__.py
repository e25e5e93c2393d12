"""Provision real infrastructure (Kafka, PostgreSQL, SMTP mailbox) for local runs and tests."""

from funnel_devstack.kafka import KafkaBroker, default_cache_dir, ensure_kafka_jars
from funnel_devstack.mailbox import MailboxServer, read_messages
from funnel_devstack.ports import free_port, wait_for_port
from funnel_devstack.postgres import PostgresServer, ensure_postgres_installed, find_pg_bin_dir
from funnel_devstack.processes import StartupError

__all__ = [
    "KafkaBroker",
    "MailboxServer",
    "PostgresServer",
    "StartupError",
    "default_cache_dir",
    "ensure_kafka_jars",
    "ensure_postgres_installed",
    "find_pg_bin_dir",
    "free_port",
    "read_messages",
    "wait_for_port",
]
