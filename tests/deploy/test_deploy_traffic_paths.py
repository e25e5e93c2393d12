"""Each overlay's NetworkPolicies open exactly the connections the code declares (next to the
code that makes them: funnel_contracts.topology and each service's interface.py), evaluated
by tests/deploy/netpol.py: a needed path that is denied fails, and so does one that is open
without being declared. Then the same check against deliberately broken overlays."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from tests.deploy.rendering import OVERLAYS, Manifest, named, of_kind, render
from tests.deploy.traffic import Overlay, prerequisites, sorted_flows


def _overlay(name: str, manifests: list[Manifest] | None = None) -> Overlay:
    return Overlay(name, manifests if manifests is not None else render(name), prerequisites(name))


def _problems(overlay: Overlay) -> tuple[list[str], list[str]]:
    needed = overlay.needed()
    allowed = overlay.allowed()
    denied = [
        f"{f}  ({needed[(f.split(' -> ')[0], *_split(f))]})"
        for f in sorted_flows(set(needed) - allowed)
    ]
    extra = sorted_flows(allowed - set(needed))
    return denied, extra


def _split(flow: str) -> tuple[str, int]:
    destination, port = flow.split(" -> ")[1].rsplit(":", 1)
    return destination, int(port)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_needed_path_is_open_and_nothing_else(overlay: str) -> None:
    checked = _overlay(overlay)
    denied, extra = _problems(checked)
    assert not denied, f"{overlay}: needed but denied:\n" + "\n".join(denied)
    assert not extra, f"{overlay}: open but not declared:\n" + "\n".join(extra)
    assert len(checked.needed()) > 40


def test_the_paths_named_in_the_issue_are_needed_and_open() -> None:
    prod = _overlay("prod")
    needed = prod.needed()
    allowed = prod.allowed()
    for flow in [
        ("Deployment/lead-intake", "Deployment/stage-tracker", 8002),
        ("Deployment/lead-intake-worker", "internet", 443),
        ("Deployment/notifier-worker", "Deployment/lead-intake", 8001),
        ("Pod/redrive", "Kafka/funnel/combined", 9093),
        ("prometheus", "Cluster/funnel-db", 9187),
        ("keda", "Kafka/funnel/combined", 9093),
    ]:
        assert flow in needed, flow
        assert flow in allowed, flow
    dev = _overlay("dev")
    assert ("Deployment/lead-intake", "Deployment/stage-tracker", 8002) in dev.allowed()


def test_every_address_the_code_can_be_given_is_declared() -> None:
    """A setting naming somewhere to connect (`*_url`, `*_host`, `*_servers`) is the setting of
    a declared connection: a new one fails here until it is declared (and then the policies
    are checked against it)."""
    from funnel_contracts.topology import KIT_CONNECTIONS
    from tests.deploy.service_catalog import SERVICES
    from tests.deploy.traffic import INTERFACES

    inbound_only = {"FUNNEL_PUBLIC_BASE_URL", "FUNNEL_HTTP_HOST"}  # where others reach us
    for name, service in SERVICES.items():
        interface = INTERFACES[name]
        declared = {c.setting for c in (*KIT_CONNECTIONS, *interface.connections)}
        declared |= {c.port_setting for c in interface.connections if c.port_setting}
        declared |= {c.setting for c in interface.calls}
        addresses = {
            f"FUNNEL_{field.upper()}"
            for field in service.settings.model_fields
            if field.endswith(("_url", "_host", "_servers"))
        }
        assert addresses - inbound_only <= declared, (name, addresses - inbound_only - declared)


# -- the test of the test: broken overlays fail ---------------------------------------------


def _drop_policy(name: str) -> Callable[[list[Manifest]], None]:
    def drop(manifests: list[Manifest]) -> None:
        manifests.remove(named(manifests, "NetworkPolicy", name))

    return drop


def _open_everything_to_intake(manifests: list[Manifest]) -> None:
    manifests.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "too-wide"},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "lead-intake"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"port": 8001}]}],
            },
        }
    )


def _widen_egress_to_all_ports(manifests: list[Manifest]) -> None:
    for policy in of_kind(manifests, "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            if any("ipBlock" in peer for peer in rule.get("to", [])):
                rule.pop("ports", None)
                return
    raise AssertionError("no egress to addresses to widen")


def _keda_bare_bootstrap(manifests: list[Manifest]) -> None:
    for scaled in of_kind(manifests, "ScaledObject"):
        scaled["spec"]["triggers"][0]["metadata"]["bootstrapServers"] = (
            "funnel-kafka-bootstrap:9093"
        )


@pytest.mark.parametrize(
    ("overlay", "breakage", "expected"),
    [
        ("dev", _drop_policy("intake-api-egress-to-tracker-api"), "denied"),
        ("prod", _drop_policy("intake-api-egress-to-tracker-api"), "denied"),
        ("prod", _drop_policy("intake-worker-egress-to-meta-graph"), "denied"),
        ("prod", _drop_policy("allow-metrics-scrape"), "denied"),
        ("dev", _open_everything_to_intake, "extra"),
        ("prod", _widen_egress_to_all_ports, "extra"),
        ("prod", _keda_bare_bootstrap, "unresolved"),
    ],
)
def test_a_broken_overlay_fails_the_check(
    overlay: str, breakage: Callable[[list[Manifest]], None], expected: str
) -> None:
    manifests = copy.deepcopy(render(overlay))
    breakage(manifests)
    if expected == "unresolved":
        with pytest.raises(AssertionError, match="names no Service"):
            _overlay(overlay, manifests).needed()
        return
    denied, extra = _problems(_overlay(overlay, manifests))
    assert denied if expected == "denied" else extra, f"{overlay}: the breakage went unnoticed"
