"""A single-node Apache Kafka broker (KRaft) run from Maven Central jars with the local Java."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path

from funnel_devstack.ports import port_is_open_async
from funnel_devstack.processes import (
    StartupError,
    kill_popen,
    start_process,
    stop_popen,
    tail,
)

KAFKA_VERSION = "4.1.1"
"""The Apache Kafka release whose jars are resolved by default."""

_MARKER = ".complete"
_HOST = "127.0.0.1"

_LOG4J2_CONFIG = """\
# Console only: WARN overall, INFO for the line that says the server started.
status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""


def default_cache_dir() -> Path:
    """Where downloaded artifacts are cached: ``$FUNNEL_CACHE_DIR`` or the user cache dir."""
    if env := os.environ.get("FUNNEL_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "funnel"


def _pom_text() -> str:
    return resources.files("funnel_devstack").joinpath("resources/kafka-pom.xml").read_text()


def ensure_kafka_jars(
    cache_dir: Path, version: str = KAFKA_VERSION, *, maven_repo: Path | None = None
) -> Path:
    """Return ``<cache_dir>/kafka-<version>/libs`` holding the broker's runtime jars.

    Runs Maven (``mvn`` on PATH) only when that folder is missing or was made from another
    POM; a complete folder carries a marker, so later calls need no network. ``maven_repo``
    overrides Maven's local repository (default ``~/.m2/repository``).
    """
    pom = _pom_text()
    fingerprint = hashlib.sha256(f"{version}\n{pom}".encode()).hexdigest()
    home = cache_dir.absolute() / f"kafka-{version}"
    libs = home / "libs"
    marker = libs / _MARKER
    if _is_complete(marker, fingerprint):
        return libs

    mvn = shutil.which("mvn")
    if mvn is None:
        raise StartupError(
            "Maven ('mvn') is not on PATH; install it (Debian: apt-get install maven)"
        )
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(pom)
    staging = Path(tempfile.mkdtemp(prefix="libs.", dir=home))
    cmd = [
        mvn, "-q", "-B", "-f", str(home / "pom.xml"),
        "dependency:copy-dependencies", "-DincludeScope=runtime",
        f"-Dkafka.version={version}", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    if maven_repo is not None:
        cmd.append(f"-Dmaven.repo.local={maven_repo.absolute()}")
    result = subprocess.run(cmd, cwd=home, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise StartupError(f"resolving Kafka {version} jars failed: {' '.join(cmd)}\n{output}")
    (staging / _MARKER).write_text(fingerprint + "\n")
    if _is_complete(marker, fingerprint):  # another process finished first: keep its folder
        shutil.rmtree(staging, ignore_errors=True)
        return libs
    if libs.exists():
        shutil.rmtree(libs)
    try:
        staging.rename(libs)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not _is_complete(marker, fingerprint):
            raise
    return libs


def _is_complete(marker: Path, fingerprint: str) -> bool:
    try:
        return marker.read_text().strip() == fingerprint
    except FileNotFoundError:
        return False


def new_cluster_id() -> str:
    """Return a KRaft cluster id: 16 random bytes, URL-safe base64, unpadded, no leading '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# The JIT's first tier only. A fresh broker spends minutes compiling its hot paths with C2:
# on the local stack that was about half the broker's CPU (3-6 ms of ~10 per lead in
# bench.pipeline_capacity, still ~3 ms after two minutes of load; 35 of 60 ms/s idle), taken
# from the same two cores as the services. With C1 alone the compile cost is gone and the
# request threads spent no more per lead. A long-running production broker finishes its C2
# work; this is for a stack started by tests and `make run` (docs/decisions/0066).
JIT_OPTIONS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1",)


class KafkaBroker:
    """One Kafka process acting as both broker and KRaft controller, for local runs and tests."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int,
        libs_dir: Path,
        heap_mb: int = 512,
        *,
        num_partitions: int = 6,
        extra_properties: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.port = port
        self.controller_port = controller_port
        self.libs_dir = libs_dir.absolute()
        self.heap_mb = heap_mb
        self.num_partitions = num_partitions
        self.extra_properties = dict(extra_properties or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """The client address, ``127.0.0.1:<port>``."""
        return f"{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while started, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_file(self) -> Path:
        """The broker's combined stdout/stderr."""
        return self.data_dir / "kafka.log"

    @property
    def properties_file(self) -> Path:
        """The generated ``server.properties``."""
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        """Where the broker keeps its partitions and metadata log."""
        return self.data_dir / "data"

    def is_running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{_HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{_HOST}:{self.port},CONTROLLER://{_HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{_HOST}:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": str(self.num_partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted broker cannot register until the old session
            # expires (default 9 s); a short session makes fault tests restart in ~5 s.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "500",
        }
        props.update(self.extra_properties)
        return props

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self._properties().items()]
        self.properties_file.write_text("\n".join(lines) + "\n")
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2_CONFIG)
        return log4j

    def _java(self, log4j: Path, heap: bool = True) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise StartupError(
                "Java is not installed (Debian: apt-get install openjdk-17-jre-headless)"
            )
        memory = [f"-Xms{min(256, self.heap_mb)}m", f"-Xmx{self.heap_mb}m"] if heap else []
        return [
            java, *memory, *JIT_OPTIONS, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", str(self.libs_dir / "*"),
        ]  # fmt: skip

    def _format_storage(self, log4j: Path) -> None:
        if (self.log_dirs / "meta.properties").is_file():
            return
        cmd = [
            *self._java(log4j, heap=False), "kafka.tools.StorageTool", "format",
            "-t", new_cluster_id(), "-c", str(self.properties_file), "--ignore-formatted",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise StartupError(f"formatting Kafka storage failed:\n{tail(self.log_file)}")

    def start(self) -> None:
        """Write the config, format storage once, and launch the broker in the background."""
        if self.is_running():
            return
        if not (self.libs_dir / _MARKER).is_file() and not any(self.libs_dir.glob("*.jar")):
            raise StartupError(f"no Kafka jars in {self.libs_dir}; call ensure_kafka_jars first")
        log4j = self._write_config()
        self._format_storage(log4j)
        cmd = [*self._java(log4j), "kafka.Kafka", str(self.properties_file)]
        self._proc = start_process(cmd, log_file=self.log_file, cwd=self.data_dir)

    async def wait_ready(self, timeout: float = 90) -> None:
        """Wait until the client port accepts connections and an admin call succeeds."""
        from aiokafka.admin import AIOKafkaAdminClient

        deadline = time.monotonic() + timeout
        last_error = "client port closed"
        while time.monotonic() < deadline:
            self._raise_if_exited()
            if await port_is_open_async(_HOST, self.port):
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000
                )
                try:
                    await asyncio.wait_for(admin.start(), 10)
                    await asyncio.wait_for(admin.describe_cluster(), 10)
                    return
                except Exception as exc:  # not ready yet; any failure means "try again"
                    last_error = repr(exc)
                finally:
                    with contextlib.suppress(Exception):
                        await admin.close()
            await asyncio.sleep(0.25)
        raise StartupError(
            f"Kafka on {self.bootstrap_servers} not ready after {timeout:.0f}s ({last_error});"
            f" tail of {self.log_file}:\n{tail(self.log_file)}"
        )

    def _raise_if_exited(self) -> None:
        if self._proc is None:
            raise StartupError("Kafka broker was not started")
        code = self._proc.poll()
        if code is not None:
            raise StartupError(
                f"Kafka broker exited with code {code}; tail of {self.log_file}:\n"
                f"{tail(self.log_file)}"
            )

    def stop(self, timeout: float = 30) -> None:
        """Shut down cleanly (SIGTERM), SIGKILL after ``timeout`` seconds."""
        if self._proc is not None:
            stop_popen(self._proc, timeout, signal.SIGTERM)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker at once (for fault tests)."""
        if self._proc is not None:
            kill_popen(self._proc)
            self._proc = None
