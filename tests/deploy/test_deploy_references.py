"""Every reference of an overlay to a Secret or ConfigMap key (env, envFrom, volumes, the
Ingress's certificate, the operators' resources: KEDA, Strimzi, CloudNativePG, and the
runbook's redrive pod) resolves to a key the overlay creates, or to a prerequisite documented
in the overlay's prerequisites.yaml (and in docs/operations.md). Then broken overlays fail."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.rendering import K8S, OVERLAYS, REPO, Manifest, named, of_kind, render
from tests.deploy.traffic import prerequisites

Reference = tuple[str, str, str | None]  # kind, name, key (None: the whole object)
RUNBOOK = (REPO / "docs" / "operations.md").read_text()
S3_KEYS = {"accessKeyId", "secretAccessKey", "sessionToken", "region"}


def _walk(node: Any, parent: str = "") -> Iterator[Reference]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, parent)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "secretKeyRef":
            yield ("Secret", value["name"], value["key"])
        elif key == "configMapKeyRef":
            yield ("ConfigMap", value["name"], value["key"])
        elif key == "secretRef" and parent == "envFrom":
            yield ("Secret", value["name"], None)
        elif key == "configMapRef" and parent == "envFrom":
            yield ("ConfigMap", value["name"], None)
        elif key == "secret" and isinstance(value, dict) and "secretName" in value:
            for item in value.get("items") or [{"key": None}]:
                yield ("Secret", value["secretName"], item["key"])
        elif key == "configMap" and isinstance(value, dict) and "name" in value:
            for item in value.get("items") or [{"key": None}]:
                yield ("ConfigMap", value["name"], item["key"])
        elif key == "secretTargetRef":
            for target in value:
                yield ("Secret", target["name"], target["key"])
        elif key == "passwordSecret" or (key == "secret" and parent == "initdb"):
            # CloudNativePG's basic-auth Secrets: the managed roles', the owner's (initdb)
            yield ("Secret", value["name"], "username")
            yield ("Secret", value["name"], "password")
        elif key in S3_KEYS and isinstance(value, dict) and {"name", "key"} <= set(value):
            yield ("Secret", value["name"], value["key"])
        else:
            yield from _walk(value, key)


def references(overlay: str, manifests: list[Manifest]) -> dict[Reference, str]:
    """Each reference, with where it is."""
    found: dict[Reference, str] = {}
    for m in manifests:
        where = f"{m['kind']}/{m['metadata']['name']}"
        for ref in _walk(m):
            found.setdefault(ref, where)
        if m["kind"] == "Ingress":
            for tls in m["spec"].get("tls", []):
                found.setdefault(("Secret", tls["secretName"], "tls.crt"), where)
                found.setdefault(("Secret", tls["secretName"], "tls.key"), where)
    overrides = K8S / "overlays" / overlay / "redrive-overrides.json"
    if overrides.is_file():
        for ref in _walk(json.loads(overrides.read_text())):
            found.setdefault(ref, "the runbook's redrive pod")
    return found


def unresolved(overlay: str, manifests: list[Manifest]) -> list[str]:
    documented = prerequisites(overlay)
    created: dict[tuple[str, str], set[str]] = {}
    for m in manifests:
        if m["kind"] in ("Secret", "ConfigMap"):
            keys = set(m.get("data", {})) | set(m.get("stringData", {}))
            created[(m["kind"], m["metadata"]["name"])] = keys
    problems = []
    for (kind, name, key), where in sorted(references(overlay, manifests).items(), key=str):
        keys = created.get((kind, name))
        if keys is None and kind == "Secret" and name in documented:
            keys = set(documented[name])
        if keys is None:
            problems.append(f"{where}: {kind} {name} is neither created nor a prerequisite")
        elif key is not None and key not in keys:
            problems.append(f"{where}: {kind} {name} has no key {key!r}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_resolves(overlay: str) -> None:
    manifests = render(overlay)
    assert len(references(overlay, manifests)) > 15
    assert unresolved(overlay, manifests) == []


def test_the_prerequisites_are_all_used_and_in_the_runbook() -> None:
    used = {name for (kind, name, _) in references("prod", render("prod")) if kind == "Secret"}
    documented = prerequisites("prod")
    assert set(documented) <= used, f"documented but unused: {set(documented) - used}"
    for name in documented:
        assert f"`{name}`" in RUNBOOK or f" {name} " in RUNBOOK, f"{name} not in the runbook"


def test_the_workers_hold_no_admin_key_and_each_service_reads_only_its_own_secret() -> None:
    for overlay in OVERLAYS:
        for d in of_kind(render(overlay), "Deployment"):
            labels = d["metadata"]["labels"]
            if labels.get("app.kubernetes.io/part-of") != "funnel":
                continue
            refs = list(_walk(d["spec"]["template"]["spec"]["containers"][0].get("env", [])))
            names = {e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
            if labels["app.kubernetes.io/component"] == "worker":
                assert "FUNNEL_ADMIN_API_KEY" not in names, d["metadata"]["name"]
                assert "FUNNEL_API_KEYS" not in names, d["metadata"]["name"]
            service = labels["app.kubernetes.io/name"]
            # Its own Secret, and (prod) the password Strimzi keeps for its Kafka user.
            # (dev: generated, named <name>-<hash of the content>)
            own = {f"funnel-{service}", service}
            read = {n if n in own else n.rsplit("-", 1)[0] for _, n, _ in refs}
            assert read <= own, (
                overlay,
                d["metadata"]["name"],
            )


def test_dev_keys_given_to_one_service_are_accepted_by_the_other() -> None:
    """The dev overlay's cross-service keys: the hash in the callee's api-keys is the key's."""
    import base64
    import hashlib

    # kustomize names a generated Secret <name>-<hash of its content>.
    secrets = {s["metadata"]["name"].rsplit("-", 1)[0]: s for s in of_kind(render("dev"), "Secret")}

    def value(secret: str, key: str) -> str:
        return base64.b64decode(secrets[secret]["data"][key]).decode()

    for caller, key, callee, scope in [
        ("funnel-lead-intake", "tracker-api-key", "funnel-stage-tracker", "leads:read"),
        ("funnel-notifier", "intake-api-key", "funnel-lead-intake", "pii:decrypt"),
    ]:
        entries = json.loads(value(callee, "api-keys"))
        digest = hashlib.sha256(value(caller, key).encode()).hexdigest()
        assert [e["scopes"] for e in entries if e["sha256"] == digest] == [[scope]]


# -- the test of the test -------------------------------------------------------------------


def test_a_missing_generated_key_fails() -> None:
    manifests = copy.deepcopy(render("dev"))
    [secret] = [
        s
        for s in of_kind(manifests, "Secret")
        if s["metadata"]["name"].startswith("funnel-lead-intake")
    ]
    del secret["data"]["tracker-api-key"]
    assert unresolved("dev", manifests) == [
        f"Deployment/lead-intake: Secret {secret['metadata']['name']} has no key 'tracker-api-key'"
    ]


def test_an_undocumented_secret_fails() -> None:
    manifests = copy.deepcopy(render("prod"))
    worker = named(manifests, "Deployment", "notifier-worker")
    worker["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {
            "name": "FUNNEL_SMTP_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "smtp", "key": "pw"}},
        }
    )
    assert unresolved("prod", manifests) == [
        "Deployment/notifier-worker: Secret smtp is neither created nor a prerequisite"
    ]


def test_an_undocumented_key_of_a_prerequisite_and_a_configmap_key_fail() -> None:
    manifests = copy.deepcopy(render("prod"))
    [kafka] = of_kind(manifests, "Kafka")
    kafka["spec"]["kafka"]["metricsConfig"]["valueFrom"]["configMapKeyRef"]["key"] = "nope.yml"
    [auth] = of_kind(manifests, "TriggerAuthentication")
    auth["spec"]["secretTargetRef"][0]["key"] = "user"
    problems = unresolved("prod", manifests)
    assert len(problems) == 2, problems
    assert any("ConfigMap kafka-metrics has no key 'nope.yml'" in p for p in problems)
    assert any("Secret funnel-keda-kafka has no key 'user'" in p for p in problems)
