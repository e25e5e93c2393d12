"""Every kustomize overlay builds, validates strictly, and agrees with the code it deploys."""

from __future__ import annotations

import copy
import hashlib
import os
import re
import secrets
from typing import Any

import pytest

from funnel_contracts.topics import ALL_TOPICS, all_topics_with_dead_letters
from funnel_servicekit.db import server_settings
from tests.deploy.rendering import (
    OVERLAYS,
    Manifest,
    named,
    of_kind,
    pod_templates,
    render,
    schema_errors,
)
from tests.deploy.service_catalog import (
    BY_MODULE,
    OTEL_VARIABLES,
    SERVICES,
    UVICORN_VARIABLES,
)

# Custom resources whose CRD no package registry serves: checked structurally below instead.
UNVENDORED_KINDS = {
    ("kafka.strimzi.io/v1", "Kafka"),
    ("kafka.strimzi.io/v1", "KafkaNodePool"),
    ("kafka.strimzi.io/v1", "KafkaTopic"),
    ("kafka.strimzi.io/v1", "KafkaUser"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "Pooler"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}


def _funnel_deployments(manifests: list[Manifest]) -> list[Manifest]:
    return [
        d
        for d in of_kind(manifests, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/part-of") == "funnel"
    ]


def _service_of(deployment: Manifest) -> Any:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    module = container["args"][container["args"].index("-m") + 1]
    return BY_MODULE[module]


def _container_env(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets; secrets become strong placeholder values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config = named(manifests, "ConfigMap", source["configMapRef"]["name"])
        env.update(config["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var["name"] == "FUNNEL_API_KEYS":
            env[var["name"]] = "[]"
        elif var["name"] == "FUNNEL_DATABASE_URL":
            env[var["name"]] = "postgresql://funnel:secret@funnel-db-pooler:5432/funnel"
        elif var["name"].endswith("_SHA256"):
            env[var["name"]] = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
        else:
            env[var["name"]] = secrets.token_urlsafe(32)
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_is_valid_against_its_schema_strictly(overlay: str) -> None:
    manifests = render(overlay)
    assert len(manifests) > 30
    checked = 0
    for manifest in manifests:
        key = (manifest["apiVersion"], manifest["kind"])
        if key in UNVENDORED_KINDS:
            continue
        errors = schema_errors(manifest)
        assert not errors, f"{overlay} {key} {manifest['metadata']['name']}: {errors}"
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("kind", "path", "field", "typo"),
    [
        (
            "Deployment",
            ["spec", "template", "spec", "containers", 0],
            "readinessProbe",
            "readinesProbe",
        ),
        (
            "Deployment",
            ["spec", "template", "spec"],
            "terminationGracePeriodSeconds",
            "terminationGracePeriodSecond",
        ),
        ("NetworkPolicy", ["spec"], "podSelector", "podSelecter"),
        ("HorizontalPodAutoscaler", ["spec"], "maxReplicas", "maxReplica"),
        ("ScaledObject", ["spec"], "maxReplicaCount", "maxReplicasCount"),
        ("ScaledObject", ["spec", "triggers", 0], "metadata", "metdata"),
    ],
)
def test_a_misspelled_field_fails_validation(
    kind: str, path: list[Any], field: str, typo: str
) -> None:
    original = of_kind(render("prod"), kind)[0]
    broken = copy.deepcopy(original)
    node = broken
    for step in path:
        node = node[step]
    node[typo] = node.pop(field)
    assert schema_errors(original) == []
    assert schema_errors(broken), f"{kind} with {typo!r} passed validation"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_an_api_and_a_worker_deployment(overlay: str) -> None:
    deployments = _funnel_deployments(render(overlay))
    by_role = {
        (_service_of(d).name, d["metadata"]["labels"]["app.kubernetes.io/component"])
        for d in deployments
    }
    assert by_role == {(s, role) for s in SERVICES for role in ("api", "worker")}
    for d in deployments:
        env = {
            e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        api = d["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
        assert env["FUNNEL_RUN_API"] == ("true" if api else "false"), d["metadata"]["name"]
        assert env["FUNNEL_RUN_WORKERS"] == ("false" if api else "true"), d["metadata"]["name"]
    if overlay == "dev":
        assert {d["spec"]["replicas"] for d in deployments} == {1}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_names_exist_in_the_settings_and_the_settings_accept_the_values(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render(overlay)
    for deployment in _funnel_deployments(manifests):
        service = _service_of(deployment)
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), f"duplicate env in {deployment['metadata']['name']}"
        env = _container_env(manifests, container)
        known = service.env_names() | OTEL_VARIABLES | UVICORN_VARIABLES
        unknown = {k for k in env if k not in known}
        assert not unknown, f"{deployment['metadata']['name']}: not a setting: {unknown}"
        for key in list(os.environ):
            if key.startswith("FUNNEL_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = service.settings()  # the production validators run here
        assert settings.http_port == int(container["ports"][0]["containerPort"])
        assert settings.http_host == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened_probed_bounded_and_drain_in_their_grace_period(overlay: str) -> None:
    manifests = render(overlay)
    funnel = {f"Deployment/{d['metadata']['name']}" for d in _funnel_deployments(manifests)}
    funnel.add("Job/funnel-migrate")
    for workload, pod in pod_templates(manifests):
        if workload not in funnel:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True, workload
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", workload
        assert pod["automountServiceAccountToken"] is False, workload
        for container in pod.get("initContainers", []) + pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, workload
            assert ctx["allowPrivilegeEscalation"] is False, workload
            assert ctx["capabilities"]["drop"] == ["ALL"], workload
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), workload
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), workload
        if workload.startswith("Job/"):
            continue
        [container] = pod["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = float(_container_env(manifests, container).get("FUNNEL_DRAIN_SECONDS", 20))
        # uvicorn's graceful close and the loops' drain each take up to FUNNEL_DRAIN_SECONDS.
        assert pod["terminationGracePeriodSeconds"] >= pre_stop + 2 * drain + 10, workload


def test_probe_and_metrics_paths_exist_in_every_service_even_with_the_api_switched_off() -> None:
    for service in SERVICES.values():
        for run_api in ("true", "false"):
            paths = service.route_paths(FUNNEL_RUN_API=run_api)
            assert {"/healthz", "/readyz", "/metrics"} <= paths, service.name
        business = service.route_paths() - service.route_paths(FUNNEL_RUN_API="false")
        assert any(p.startswith("/v1/") for p in business), service.name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_the_api_pods_on_the_code_s_port(overlay: str) -> None:
    manifests = render(overlay)
    for name, service in SERVICES.items():
        svc = named(manifests, "Service", name)
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "api"
        assert svc["spec"]["ports"][0]["port"] == service.port
        api = named(manifests, "Deployment", name)
        assert (
            api["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
            == service.port
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_default_deny(overlay: str) -> None:
    manifests = render(overlay)
    budgets = {
        tuple(sorted(p["spec"]["selector"]["matchLabels"].items()))
        for p in of_kind(manifests, "PodDisruptionBudget")
    }
    for deployment in _funnel_deployments(manifests):
        assert tuple(sorted(deployment["spec"]["selector"]["matchLabels"].items())) in budgets
    deny = named(manifests, "NetworkPolicy", "default-deny-all")
    assert deny["spec"]["podSelector"] == {}
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]


def test_prod_topics_are_exactly_the_contract_topics_and_workers_never_outscale_them() -> None:
    manifests = render("prod")
    topics = {t["spec"]["topicName"]: t for t in of_kind(manifests, "KafkaTopic")}
    assert sorted(topics) == sorted(all_topics_with_dead_letters())
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "funnel"
        assert topic["spec"]["replicas"] == 3
    partitions = min(topics[t]["spec"]["partitions"] for t in ALL_TOPICS)
    scaled = of_kind(manifests, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {
        "stage-tracker-worker",
        "notifier-worker",
        "reporting-worker",
    }
    for so in scaled:
        assert so["spec"]["maxReplicaCount"] <= partitions
        [trigger] = so["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        # The consumer group is the service's name (InboxConsumer group_id=service_name).
        group = so["spec"]["scaleTargetRef"]["name"].removesuffix("-worker")
        assert trigger["metadata"]["consumerGroup"] == group
        # KEDA's operator runs in its own namespace: the Service's full name, the TLS listener.
        assert trigger["metadata"]["bootstrapServers"] == "funnel-kafka-bootstrap.funnel.svc:9093"
        assert trigger["metadata"]["sasl"] == "scram_sha512"
        assert trigger["metadata"]["tls"] == "enable"
        auth = named(manifests, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert {t["parameter"] for t in auth["spec"]["secretTargetRef"]} == {
            "username",
            "password",
            "ca",
        }
    hpas = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(manifests, "HorizontalPodAutoscaler")
    }
    assert hpas == set(SERVICES)


def test_autoscaled_deployments_pin_no_replicas_and_the_cpu_target_means_load() -> None:
    manifests = render("prod")
    managed = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(manifests, "HorizontalPodAutoscaler")
    } | {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(manifests, "ScaledObject")}
    assert len(managed) == 7
    for deployment in _funnel_deployments(manifests):
        name = deployment["metadata"]["name"]
        assert ("replicas" in deployment["spec"]) is (name not in managed), name
    for hpa in of_kind(manifests, "HorizontalPodAutoscaler"):
        target = named(manifests, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        request = target["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        millicores = int(request["cpu"].removesuffix("m"))
        [metric] = hpa["spec"]["metrics"]
        # Scaling starts at 350m of real work, not at 70m (70 % of a 100m request).
        assert millicores * metric["resource"]["target"]["averageUtilization"] / 100 >= 300


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_spread_over_zones_then_nodes(overlay: str) -> None:
    manifests = render(overlay)
    for deployment in _funnel_deployments(manifests):
        pod = deployment["spec"]["template"]["spec"]
        keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
        assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for c in pod["topologySpreadConstraints"]:
            assert all(labels.get(k) == v for k, v in c["labelSelector"]["matchLabels"].items())
            assert c["matchLabelKeys"] == ["pod-template-hash"]  # this Deployment's pods
    if overlay == "prod":
        [cluster] = of_kind(manifests, "Cluster")
        [kafka] = of_kind(manifests, "Kafka")
        for spread in (
            cluster["spec"]["topologySpreadConstraints"],
            kafka["spec"]["kafka"]["template"]["pod"]["topologySpreadConstraints"],
        ):
            assert spread[0]["topologyKey"] == "topology.kubernetes.io/zone"


def test_prod_data_plane_matches_what_the_services_are_given() -> None:
    manifests = render("prod")
    [kafka] = of_kind(manifests, "Kafka")
    [pool] = of_kind(manifests, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"broker", "controller"}
    # One listener, TLS with SCRAM; authorization by ACLs.
    [listener] = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    config = named(manifests, "ConfigMap", "funnel-config")["data"]
    assert config["FUNNEL_KAFKA_BOOTSTRAP_SERVERS"] == (
        f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    )
    assert config["FUNNEL_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["FUNNEL_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    users = {u["metadata"]["name"] for u in of_kind(manifests, "KafkaUser")}
    for deployment in _funnel_deployments(manifests):
        service = _service_of(deployment).name
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["FUNNEL_KAFKA_SASL_USERNAME"]["value"] == service
        assert service in users
        password = env["FUNNEL_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": service, "key": "password"}  # Strimzi's user Secret
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert config["FUNNEL_KAFKA_SSL_CAFILE"].rsplit("/", 1)[0] in mounts
        # Each service's own database role, through the Pooler.
        assert env["FUNNEL_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": f"funnel-{service}",
            "key": "database-uri",
        }


def test_prod_database_is_backed_up_synchronous_and_pooled() -> None:
    manifests = render("prod")
    [cluster] = of_kind(manifests, "Cluster")
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["minSyncReplicas"] == 1 <= spec["maxSyncReplicas"]
    store = spec["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://")
    assert store["wal"]["compression"]  # the WAL archive: point-in-time recovery
    assert spec["backup"]["retentionPolicy"] == "30d"
    [scheduled] = of_kind(manifests, "ScheduledBackup")
    assert scheduled["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert scheduled["spec"]["method"] == "barmanObjectStore"
    assert len(scheduled["spec"]["schedule"].split()) == 6  # CloudNativePG's: seconds first
    # A role per service (named as the services' db_schema), owning nothing: the schemas are
    # the database owner's, who migrates (tests/deploy/test_deploy_database_roles.py).
    roles = {r["name"] for r in spec["managed"]["roles"]}
    schemas = {s.settings.model_fields["db_schema"].default for s in SERVICES.values()}
    assert roles == schemas
    sql = spec["bootstrap"]["initdb"]["postInitApplicationSQL"]
    owner = spec["bootstrap"]["initdb"]["owner"]
    for schema in schemas:
        assert f"CREATE SCHEMA {schema} AUTHORIZATION {owner}" in sql
    [pooler] = of_kind(manifests, "Pooler")
    assert pooler["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert pooler["spec"]["type"] == "rw"
    params = pooler["spec"]["pgbouncer"]["parameters"]
    server_side = pooler["spec"]["instances"] * len(roles) * int(params["default_pool_size"])
    assert server_side < int(spec["postgresql"]["parameters"]["max_connections"])
    # Every session setting a service sends at startup gets past PgBouncer (which refuses a
    # startup parameter it neither knows nor ignores) and, as PgBouncer drops it, is set on
    # every service's role by the bootstrap instead.
    ignored = set(params["ignore_startup_parameters"].split(","))
    for schema in schemas:
        sent = server_settings(schema)
        for name, value in sent.items():
            if name == "application_name":
                continue  # PgBouncer passes it on
            assert name in ignored, name
            assert f"ALTER ROLE {schema} SET {name} = {value.replace(',', ', ')}" in sql, name


def test_prod_topics_are_owned_by_kafka_topic_resources_alone() -> None:
    job = named(render("prod"), "Job", "funnel-migrate")
    pod = job["spec"]["template"]["spec"]
    for container in pod.get("initContainers", []) + pod["containers"]:
        assert container["args"][-1] == "migrate", container["name"]
    dev_job = named(render("dev"), "Job", "funnel-migrate")
    assert "ensure_topics" in str(dev_job["spec"]["template"]["spec"]["containers"])


def test_kafka_users_may_do_exactly_what_each_service_s_code_does() -> None:
    from funnel_contracts.topics import dead_letter_topic
    from tests.deploy.traffic import INTERFACES

    users = {u["metadata"]["name"]: u for u in of_kind(render("prod"), "KafkaUser")}
    for name, interface in INTERFACES.items():
        granted: set[tuple[str, str, str]] = set()
        for acl in users[name]["spec"]["authorization"]["acls"]:
            for op in acl["operations"]:
                granted.add((acl["resource"]["type"], acl["resource"]["name"], op))
        expected = {("topic", t, op) for t in interface.produces for op in ("Write", "Describe")}
        for t in interface.consumes:
            expected |= {("topic", t, "Read"), ("topic", t, "Describe")}
            expected |= {("topic", dead_letter_topic(t), o) for o in ("Write", "Describe")}
        if interface.consumes:
            expected.add(("group", name, "Read"))
        assert granted == expected, name
    assert {"funnel-redrive", "keda"} <= set(users)


def test_prod_ingress_exposes_the_declared_public_routes_and_nothing_else() -> None:
    from tests.deploy.traffic import INTERFACES

    [ingress] = of_kind(render("prod"), "Ingress")
    public = {(s, r) for s, i in INTERFACES.items() for r in i.public_routes}
    exposed = set()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]["name"]
            pattern = re.compile(path["path"])
            for route in SERVICES[backend].route_paths():
                concrete = re.sub(r"\{[^}]+\}", "abc", route)
                if pattern.match(concrete):
                    exposed.add((backend, route))
    assert exposed == public
    for service, route in public:
        assert route in SERVICES[service].route_paths(), (service, route)


def test_the_public_edge_sees_visitors_and_serves_https_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    manifests = render("prod")
    config = named(manifests, "ConfigMap", "funnel-config")["data"]
    # uvicorn (the services' server) reads FORWARDED_ALLOW_IPS when the kit starts it.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", config["FORWARDED_ALLOW_IPS"])
    server = uvicorn.Config(app=lambda *_: None)
    assert server.forwarded_allow_ips == config["FORWARDED_ALLOW_IPS"]
    assert server.proxy_headers is True
    intake = named(manifests, "Deployment", "lead-intake")
    env = _container_env(manifests, intake["spec"]["template"]["spec"]["containers"][0])
    [ingress] = of_kind(manifests, "Ingress")
    host = ingress["spec"]["tls"][0]["hosts"][0]
    assert env["FUNNEL_PUBLIC_BASE_URL"] == f"https://{host}"
    notifier = named(manifests, "ConfigMap", "funnel-notifier-config")["data"]
    assert notifier["FUNNEL_PUBLIC_BASE_URL"] == f"https://{host}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_holds_the_admin_key_itself(overlay: str) -> None:
    """The APIs check the admin key by its SHA-256; the key stays with the admins."""
    manifests = render(overlay)
    apis = 0
    for workload, pod in pod_templates(manifests):
        for container in pod["containers"] + pod.get("initContainers", []):
            names = {e["name"] for e in container.get("env", [])}
            assert "FUNNEL_ADMIN_API_KEY" not in names, f"{workload} holds the admin key"
            apis += "FUNNEL_ADMIN_API_KEY_SHA256" in names
    assert apis == 4  # each service's API checks it
