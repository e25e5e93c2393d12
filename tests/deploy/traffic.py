"""The connections an overlay needs, from what the code declares (funnel_contracts.topology and
each service's interface.py), and the connections its NetworkPolicies allow (tests/deploy/
netpol.py), both as sets of (source, destination, port) over the overlay's pods and the few
endpoints outside it (Prometheus, the ingress controller, KEDA, the collector, the internet...).
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from funnel_contracts.topology import INBOUND_PATHS, KIT_CONNECTIONS, Connection
from lead_intake.interface import INTERFACE as INTAKE
from notifier.interface import INTERFACE as NOTIFIER
from reporting.interface import INTERFACE as REPORTING
from stage_tracker.interface import INTERFACE as TRACKER
from tests.deploy.netpol import Cluster, Endpoint
from tests.deploy.rendering import K8S, REPO, Manifest, of_kind
from tests.deploy.service_catalog import BY_MODULE

INTERFACES = {i.name: i for i in (INTAKE, TRACKER, NOTIFIER, REPORTING)}
RUNBOOK = REPO / "docs" / "operations.md"
PART_OF = "app.kubernetes.io/part-of"
Flow = tuple[str, str, int]  # source name, destination name, TCP port


def _ns(name: str, **labels: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name, **labels}


# Endpoints outside the overlay's namespace, as docs/operations.md's prerequisites place them.
OUTSIDE = {
    "prometheus": Endpoint(
        "prometheus",
        "10.200.0.1",
        "monitoring",
        {"app.kubernetes.io/name": "prometheus"},
        _ns("monitoring"),
    ),
    "ingress": Endpoint(
        "ingress",
        "10.200.0.2",
        "ingress-nginx",
        {"app.kubernetes.io/name": "ingress-nginx"},
        _ns("ingress-nginx"),
    ),
    "keda": Endpoint("keda", "10.200.0.3", "keda", {"app": "keda-operator"}, _ns("keda")),
    "otel-collector": Endpoint(
        "otel-collector",
        "10.200.0.4",
        "observability",
        {"app.kubernetes.io/name": "otel-collector"},
        _ns("observability"),
        {"otlp-http": 4318},
    ),
    "internal-clients": Endpoint(
        "internal-clients",
        "10.200.0.5",
        "crm",
        {"app": "crm"},
        _ns("crm", **{"funnel.io/internal-client": "true"}),
    ),
    "kube-dns": Endpoint(
        "kube-dns", "10.200.0.6", "kube-system", {"k8s-app": "kube-dns"}, _ns("kube-system")
    ),
    "strimzi-operator": Endpoint(
        "strimzi-operator", "10.200.0.7", "strimzi", {"name": "strimzi"}, _ns("strimzi")
    ),
    "cnpg-operator": Endpoint(
        "cnpg-operator",
        "10.200.0.8",
        "cnpg-system",
        {"app.kubernetes.io/name": "cloudnative-pg"},
        _ns("cnpg-system"),
    ),
    # Anything else: a pod of some other namespace, and the internet.
    "stranger": Endpoint("stranger", "10.200.0.9", "elsewhere", {"app": "x"}, _ns("elsewhere")),
    "internet": Endpoint("internet", "203.0.113.10"),
}
OPERATORS = {"strimzi-operator", "cnpg-operator"}
PROBE_PORTS = {22, 53, 80, 443, 5432, 6443, 8000, 9090, 9091, 9092, 9093, 9094, 9187, 9404, 9999}


@dataclass
class Overlay:
    """An overlay's rendered resources, its pods (one endpoint per pod template) and the
    endpoints outside it."""

    name: str
    manifests: list[Manifest]
    prerequisites: dict[str, dict[str, str]]

    def __post_init__(self) -> None:
        [namespace] = of_kind(self.manifests, "Namespace")
        self.namespace: str = namespace["metadata"]["name"]
        self.pods: dict[str, Endpoint] = {}
        self.data_plane: set[str] = set()
        self.funnel_pods: dict[str, tuple[str, str]] = {}  # endpoint -> (service, part)
        self._addresses = (str(ip) for ip in ipaddress.ip_network("10.100.0.0/16").hosts())
        for m in self.manifests:
            if m["kind"] in ("Deployment", "StatefulSet", "Job"):
                self._add_workload(m)
        self._add_operator_pods()
        self.redrive = self._add_redrive_pod()

    # -- pods ------------------------------------------------------------------------------

    def _pod(self, name: str, labels: dict[str, str], ports: dict[str, int]) -> Endpoint:
        endpoint = Endpoint(
            name,
            next(self._addresses),
            self.namespace,
            {k: str(v) for k, v in labels.items()},
            _ns(self.namespace),
            ports,
        )
        self.pods[name] = endpoint
        return endpoint

    def _add_workload(self, m: Manifest) -> None:
        template = m["spec"]["template"]
        containers = template["spec"].get("initContainers", []) + template["spec"]["containers"]
        ports = {
            p["name"]: p["containerPort"]
            for c in containers
            for p in c.get("ports", [])
            if "name" in p
        }
        name = f"{m['kind']}/{m['metadata']['name']}"
        labels = template["metadata"].get("labels", {})
        self._pod(name, labels, ports)
        if labels.get(PART_OF) == "funnel" and m["kind"] == "Deployment":
            [container] = template["spec"]["containers"]
            module = container["args"][container["args"].index("-m") + 1]
            self.funnel_pods[name] = (BY_MODULE[module].name, labels["app.kubernetes.io/component"])
        elif labels.get("funnel.io/data-plane") == "true":
            self.data_plane.add(name)

    def _add_operator_pods(self) -> None:
        """The pods Strimzi and CloudNativePG create from their resources, with the labels
        and ports their documentation gives them."""
        for kafka in of_kind(self.manifests, "Kafka"):
            cluster = kafka["metadata"]["name"]
            extra = kafka["spec"]["kafka"].get("template", {}).get("pod", {}).get("metadata", {})
            for pool in of_kind(self.manifests, "KafkaNodePool"):
                if pool["metadata"]["labels"].get("strimzi.io/cluster") != cluster:
                    continue
                labels = {
                    "strimzi.io/cluster": cluster,
                    "strimzi.io/kind": "Kafka",
                    "strimzi.io/name": f"{cluster}-kafka",
                    "strimzi.io/pool-name": pool["metadata"]["name"],
                    "strimzi.io/broker-role": str("broker" in pool["spec"]["roles"]).lower(),
                    **extra.get("labels", {}),
                }
                ports = {
                    f"listener-{lst['name']}": lst["port"]
                    for lst in kafka["spec"]["kafka"]["listeners"]
                }
                ports |= {"replication": 9091, "control-plane": 9090, "metrics": 9404}
                name = f"Kafka/{cluster}/{pool['metadata']['name']}"
                self._pod(name, labels, ports)
                self.data_plane.add(name)
            if "kafkaExporter" in kafka["spec"]:
                name = f"Kafka/{cluster}/kafka-exporter"
                labels = {
                    "strimzi.io/cluster": cluster,
                    "strimzi.io/kind": "Kafka",
                    "strimzi.io/name": f"{cluster}-kafka-exporter",
                }
                self._pod(name, labels, {"metrics": 9404})
                self.data_plane.add(name)
            if "entityOperator" in kafka["spec"]:
                name = f"Kafka/{cluster}/entity-operator"
                self._pod(
                    name,
                    {
                        "strimzi.io/cluster": cluster,
                        "strimzi.io/kind": "Kafka",
                        "strimzi.io/name": f"{cluster}-entity-operator",
                    },
                    {},
                )
                self.data_plane.add(name)
        for cluster in of_kind(self.manifests, "Cluster"):
            name = cluster["metadata"]["name"]
            labels = {"cnpg.io/cluster": name, "cnpg.io/podRole": "instance"}
            labels |= cluster["spec"].get("inheritedMetadata", {}).get("labels", {})
            self._pod(
                f"Cluster/{name}", labels, {"postgresql": 5432, "metrics": 9187, "status": 8000}
            )
            self.data_plane.add(f"Cluster/{name}")
        for pooler in of_kind(self.manifests, "Pooler"):
            name = pooler["metadata"]["name"]
            labels = {"cnpg.io/poolerName": name, "cnpg.io/podRole": "pooler"}
            labels |= pooler["spec"].get("template", {}).get("metadata", {}).get("labels", {})
            self._pod(f"Pooler/{name}", labels, {"pgbouncer": 5432, "metrics": 9127})
            self.data_plane.add(f"Pooler/{name}")

    def _add_redrive_pod(self) -> tuple[str, str] | None:
        """The runbook's `kubectl run` redrive pod, with the labels its command gives it, and
        the bootstrap address it is told."""
        text = RUNBOOK.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if "kubectl" in line and " run " in line and f"-n {self.namespace} " in line:
                words = shlex.split(line.split("#")[0])
                name = words[words.index("run") + 1]
                labels = {"run": name}
                for word in words:
                    if word.startswith("--labels="):
                        labels = dict(
                            p.split("=", 1) for p in word.removeprefix("--labels=").split(",")
                        )
                self._pod(f"Pod/{name}", labels, {})
                bootstrap = words[words.index("--bootstrap-servers") + 1]
                return f"Pod/{name}", bootstrap
        return None

    def endpoints(self) -> list[Endpoint]:
        return [*self.pods.values(), *OUTSIDE.values()]

    # -- settings --------------------------------------------------------------------------

    def _config(self, kind: str, name: str) -> dict[str, str] | None:
        for m in of_kind(self.manifests, kind):
            if m["metadata"]["name"] == name:
                if kind == "Secret":
                    data = {k: base64.b64decode(v).decode() for k, v in m.get("data", {}).items()}
                    return data | m.get("stringData", {})
                return dict(m.get("data", {}))
        return self.prerequisites.get(name) if kind == "Secret" else None

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """A container's environment; secrets from the overlay, or the documented
        prerequisites' example values."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            kind, ref = (
                ("ConfigMap", source["configMapRef"])
                if "configMapRef" in source
                else ("Secret", source["secretRef"])
            )
            env |= self._config(kind, ref["name"]) or {}
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
                continue
            source = var["valueFrom"]
            kind, ref = (
                ("Secret", source["secretKeyRef"])
                if "secretKeyRef" in source
                else ("ConfigMap", source["configMapKeyRef"])
            )
            values = self._config(kind, ref["name"]) or {}
            if ref["key"] in values:
                env[var["name"]] = values[ref["key"]]
            elif not ref.get("optional"):
                env[var["name"]] = "<unresolved>"
        return env

    # -- addresses -------------------------------------------------------------------------

    def resolve(
        self, address: str, default_port: int, from_namespace: str
    ) -> list[tuple[str, int]]:
        """Where an address (URL, URI, `host:port`, comma list, JSON list of hosts) goes: the
        endpoints and ports it reaches, resolved as a pod of `from_namespace` would."""
        address = address.strip()
        if address.startswith("["):
            hosts = json.loads(address)
            found = [t for h in hosts for t in self._service(h, default_port, from_namespace)]
            return found or [("internet", default_port)]
        found: list[tuple[str, int]] = []
        for part in address.split(","):
            if "://" in part:
                url = urlsplit(part)
                scheme_port = {"https": 443, "http": 80, "postgresql": 5432, "postgres": 5432}
                host, port = (
                    url.hostname or "",
                    url.port or scheme_port.get(url.scheme, default_port),
                )
            elif ":" in part:
                host, port_text = part.rsplit(":", 1)
                port = int(port_text)
            else:
                host, port = part, default_port
            found += self._service(host, port, from_namespace)
        return found

    def _service(self, host: str, port: int, from_namespace: str) -> list[tuple[str, int]]:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        assert literal is None or not literal.is_loopback, (
            f"{host}:{port} is the pod itself: a setting is missing"
        )
        labels = host.split(".")
        name = labels[0]
        if len(labels) == 1:
            namespace = from_namespace
        elif len(labels) == 2 or labels[2:] in (["svc"], ["svc", "cluster", "local"]):
            namespace = labels[1]
        else:
            return [("internet", port)]
        if namespace == "observability":
            return [("otel-collector", port)]
        assert namespace == self.namespace, (
            f"{host!r} (from namespace {from_namespace}) names no Service of the overlay's "
            f"namespace {self.namespace}"
        )
        for svc in of_kind(self.manifests, "Service"):
            if svc["metadata"]["name"] != name:
                continue
            [entry] = [p for p in svc["spec"]["ports"] if p["port"] == port]
            target = entry.get("targetPort", port)
            pods = [
                p
                for p in self.pods.values()
                if all(p.labels.get(k) == v for k, v in svc["spec"]["selector"].items())
            ]
            assert pods, f"Service {name} selects no pod"
            return [(p.name, p.ports[target] if isinstance(target, str) else target) for p in pods]
        # Services the operators create for their resources.
        for kafka in of_kind(self.manifests, "Kafka"):
            if name == f"{kafka['metadata']['name']}-kafka-bootstrap":
                ports = {lst["port"] for lst in kafka["spec"]["kafka"]["listeners"]}
                assert port in ports, f"{host}:{port}: no such listener ({sorted(ports)})"
                brokers = [
                    p.name
                    for p in self.pods.values()
                    if p.labels.get("strimzi.io/cluster") == kafka["metadata"]["name"]
                    and p.labels.get("strimzi.io/broker-role") == "true"
                ]
                return [(b, port) for b in brokers]
        for cluster in of_kind(self.manifests, "Cluster"):
            if name in {f"{cluster['metadata']['name']}-{s}" for s in ("rw", "ro", "r")}:
                return [(f"Cluster/{cluster['metadata']['name']}", 5432)]
        for pooler in of_kind(self.manifests, "Pooler"):
            if name == pooler["metadata"]["name"]:
                return [(f"Pooler/{name}", 5432)]
        raise AssertionError(f"{host!r} names no Service of the overlay {self.name}")

    # -- what is needed --------------------------------------------------------------------

    def needed(self) -> dict[Flow, str]:
        """Every connection the code and the runbook need here, with why."""
        flows: dict[Flow, str] = {}

        def add(source: str, targets: list[tuple[str, int]], why: str) -> None:
            for target, port in targets:
                flows[(source, target, port)] = why

        for name, (service, part) in self.funnel_pods.items():
            interface = INTERFACES[service]
            kind, _, workload = name.partition("/")
            [deployment] = [
                m for m in of_kind(self.manifests, kind) if m["metadata"]["name"] == workload
            ]
            [container] = deployment["spec"]["template"]["spec"]["containers"]
            env = self.env(container)
            settings = BY_MODULE[_module(container)].settings
            for conn in (*KIT_CONNECTIONS, *interface.connections):
                if part not in conn.made_by or (conn.when and not env.get(conn.when)):
                    continue
                add(
                    name, self._connection_targets(conn, env, settings), f"{service} {conn.purpose}"
                )
            for call in interface.calls:
                if part in call.made_by:
                    url = env.get(call.setting) or _default(settings, call.setting)
                    assert url, f"{name}: {call.setting} is not set: {call.request} cannot be made"
                    add(name, self.resolve(url, 80, self.namespace), f"{service} {call.request}")
            add(name, [("kube-dns", 53)], "names")
            port = self.pods[name].ports["http"]
            for inbound in INBOUND_PATHS:
                if part in inbound.parts and inbound.caller != "ingress":
                    flows[(inbound.caller, name, port)] = inbound.purpose
        for ingress in of_kind(self.manifests, "Ingress"):
            for rule in ingress["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    assert INTERFACES[backend["name"]].public_routes, backend["name"]
                    port = backend["port"].get("number") or _service_port(self.manifests, backend)
                    for target, target_port in self.resolve(
                        f"{backend['name']}:{port}", port, self.namespace
                    ):
                        flows[("ingress", target, target_port)] = "public routes"
        for job in of_kind(self.manifests, "Job"):
            name = f"Job/{job['metadata']['name']}"
            spec = job["spec"]["template"]["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                env = self.env(container)
                args = " ".join(container["args"])
                if "migrate" in args:
                    add(
                        name,
                        self.resolve(env["FUNNEL_DATABASE_URL"], 5432, self.namespace),
                        "migrations",
                    )
                if "ensure_topics" in args:
                    add(
                        name,
                        self.resolve(env["FUNNEL_KAFKA_BOOTSTRAP_SERVERS"], 9092, self.namespace),
                        "topics",
                    )
            add(name, [("kube-dns", 53)], "names")
        for scaled in of_kind(self.manifests, "ScaledObject"):
            for trigger in scaled["spec"]["triggers"]:
                if trigger["type"] == "kafka":
                    add(
                        "keda",
                        self.resolve(trigger["metadata"]["bootstrapServers"], 9092, "keda"),
                        "lag",
                    )
        if self.redrive:
            pod, bootstrap = self.redrive
            add(pod, self.resolve(bootstrap, 9092, self.namespace), "the runbook's redrive")
            add(pod, [("kube-dns", 53)], "names")
        for cluster in of_kind(self.manifests, "Cluster"):
            if cluster["spec"].get("monitoring", {}).get("enablePodMonitor"):
                flows[("prometheus", f"Cluster/{cluster['metadata']['name']}", 9187)] = "pg metrics"
        for pooler in of_kind(self.manifests, "Pooler"):
            if pooler["spec"].get("monitoring", {}).get("enablePodMonitor"):
                flows[("prometheus", f"Pooler/{pooler['metadata']['name']}", 9127)] = (
                    "pgbouncer metrics"
                )
        for kafka in of_kind(self.manifests, "Kafka"):
            for pod in self.pods.values():
                metrics = {
                    f"{kafka['metadata']['name']}-kafka": kafka["spec"]["kafka"].get(
                        "metricsConfig"
                    ),
                    f"{kafka['metadata']['name']}-kafka-exporter": "kafkaExporter" in kafka["spec"],
                }
                if metrics.get(pod.labels.get("strimzi.io/name", "")):
                    flows[("prometheus", pod.name, 9404)] = "kafka metrics"
        return flows

    def _connection_targets(
        self, conn: Connection, env: dict[str, str], settings: Any
    ) -> list[tuple[str, int]]:
        value = env.get(conn.setting) or _default(settings, conn.setting)
        assert value is not None, f"{conn.setting} is not set"
        port = conn.port or 0
        if conn.port_setting:
            port = int(env.get(conn.port_setting) or _default(settings, conn.port_setting))
        if conn.port and value.strip() in ("", "[]"):
            return [("internet", conn.port)]
        return self.resolve(value, port, self.namespace)

    # -- what is allowed -------------------------------------------------------------------

    def in_scope(self, source: str, destination: str) -> bool:
        """The connections checked both ways: those of the Funnel pods and the redrive pod,
        and who reaches the data plane (its own peers and operators are the operators'
        business)."""
        ours = set(self.funnel_pods) | {n for n in self.pods if n.startswith("Job/")}
        if self.redrive:
            ours.add(self.redrive[0])
        if source in ours or destination in ours:
            return True
        if destination in self.data_plane:
            return source not in self.data_plane and source not in OPERATORS
        return False

    def allowed(self) -> set[Flow]:
        cluster = Cluster(self.namespace, of_kind(self.manifests, "NetworkPolicy"))
        endpoints = self.endpoints()
        ports = set(PROBE_PORTS)
        for e in endpoints:
            ports |= set(e.ports.values())
        for policy in cluster.policies:
            for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
                ports |= {
                    p["port"] for p in rule.get("ports", []) if isinstance(p.get("port"), int)
                }
        found = set()
        for source, destination in itertools.permutations(endpoints, 2):
            if not self.in_scope(source.name, destination.name):
                continue
            for port in ports:
                if cluster.allows(source, destination, port):
                    found.add((source.name, destination.name, port))
        return found


def _module(container: dict[str, Any]) -> str:
    args: list[str] = container["args"]
    return args[args.index("-m") + 1]


def _default(settings: Any, name: str) -> str | None:
    field = settings.model_fields.get(name.removeprefix("FUNNEL_").lower())
    value = None if field is None else field.get_default(call_default_factory=True)
    if value is None:
        return None
    return json.dumps(value) if isinstance(value, list) else str(value)


def _service_port(manifests: list[Manifest], backend: dict[str, Any]) -> int:
    for svc in of_kind(manifests, "Service"):
        if svc["metadata"]["name"] == backend["name"]:
            for p in svc["spec"]["ports"]:
                if p.get("name") == backend["port"]["name"]:
                    return int(p["port"])
    raise AssertionError(f"no port {backend['port']} on Service {backend['name']}")


def prerequisites(overlay: str) -> dict[str, dict[str, str]]:
    """The Secrets an overlay references but does not create (created by the SREs or an
    operator), documented in the overlay's prerequisites.yaml with example values."""
    path = K8S / "overlays" / overlay / "prerequisites.yaml"
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    return {name: dict(spec["keys"]) for name, spec in loaded.get("secrets", {}).items()}


def sorted_flows(flows: Iterator[Flow] | set[Flow]) -> list[str]:
    return [f"{s} -> {d}:{p}" for s, d, p in sorted(flows)]
