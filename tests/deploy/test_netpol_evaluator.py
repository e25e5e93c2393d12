"""The NetworkPolicy evaluator (tests/deploy/netpol.py) against the API reference's semantics."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.netpol import Cluster, Endpoint, matches_selector

NS = "shop"


def pod(name: str, ip: str, namespace: str = NS, **labels: str) -> Endpoint:
    return Endpoint(
        name,
        ip,
        namespace,
        labels=labels,
        namespace_labels={"kubernetes.io/metadata.name": namespace},
        ports={"http": 8080},
    )


WEB = pod("web", "10.0.0.1", app="web")
DB = pod("db", "10.0.0.2", app="db")
OTHER_NS = pod("probe", "10.0.1.1", namespace="monitoring", app="prometheus")
INTERNET = Endpoint("internet", "203.0.113.7")


def policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p"}, "spec": spec}


DENY_ALL = policy({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def test_no_policy_allows_everything_and_default_deny_denies_everything() -> None:
    assert Cluster(NS, []).allows(WEB, DB, 5432)
    assert Cluster(NS, []).allows(WEB, INTERNET, 443)
    denied = Cluster(NS, [DENY_ALL])
    assert not denied.allows(WEB, DB, 5432)
    assert not denied.allows(WEB, INTERNET, 443)
    assert not denied.allows(OTHER_NS, WEB, 8080)
    # A pod of another namespace is not isolated by this namespace's policies.
    assert denied.egress_allows(OTHER_NS, INTERNET, 443)


def test_both_ends_must_allow() -> None:
    egress = policy(
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
        }
    )
    ingress = policy(
        {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                    "ports": [{"port": 5432}],
                }
            ],
        }
    )
    assert not Cluster(NS, [DENY_ALL, egress]).allows(WEB, DB, 5432)
    assert not Cluster(NS, [DENY_ALL, ingress]).allows(WEB, DB, 5432)
    both = Cluster(NS, [DENY_ALL, egress, ingress])
    assert both.allows(WEB, DB, 5432)
    assert not both.allows(WEB, DB, 5433)  # the ingress rule names its port
    assert not both.allows(DB, WEB, 8080)


def test_policy_types_default_to_ingress_plus_egress_when_egress_is_present() -> None:
    only_ingress = policy({"podSelector": {}, "ingress": []})
    cluster = Cluster(NS, [only_ingress])
    assert not cluster.allows(WEB, DB, 5432)  # ingress isolated, nothing allowed
    assert cluster.egress_allows(WEB, INTERNET, 443)  # egress not isolated
    with_egress = policy({"podSelector": {}, "egress": []})
    assert not Cluster(NS, [with_egress]).egress_allows(WEB, INTERNET, 443)


def test_a_pod_selector_alone_means_the_policy_s_namespace() -> None:
    same_labels_elsewhere = pod("db", "10.0.1.2", namespace="other", app="db")
    egress = policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
        }
    )
    cluster = Cluster(NS, [egress])
    assert cluster.egress_allows(WEB, DB, 5432)
    assert not cluster.egress_allows(WEB, same_labels_elsewhere, 5432)


def test_namespace_selector_with_and_without_a_pod_selector() -> None:
    any_pod = policy(
        {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                            }
                        }
                    ]
                }
            ],
        }
    )
    assert Cluster(NS, [any_pod]).ingress_allows(OTHER_NS, WEB, 8080)
    assert not Cluster(NS, [any_pod]).ingress_allows(DB, WEB, 8080)
    narrowed = policy(
        {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": {"app": "grafana"}},
                        }
                    ]
                }
            ],
        }
    )
    assert not Cluster(NS, [narrowed]).ingress_allows(OTHER_NS, WEB, 8080)
    grafana = pod("grafana", "10.0.1.3", namespace="monitoring", app="grafana")
    assert Cluster(NS, [narrowed]).ingress_allows(grafana, WEB, 8080)


def test_ip_blocks_with_exceptions_and_selectors_never_match_addresses() -> None:
    public = policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                    "ports": [{"protocol": "TCP", "port": 443}],
                }
            ],
        }
    )
    cluster = Cluster(NS, [public])
    assert cluster.egress_allows(WEB, INTERNET, 443)
    assert not cluster.egress_allows(WEB, INTERNET, 80)
    assert not cluster.egress_allows(WEB, DB, 443)  # 10.0.0.2 is excepted
    selector = policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {}}]}],
        }
    )
    assert not Cluster(NS, [selector]).egress_allows(WEB, INTERNET, 443)
    assert Cluster(NS, [selector]).egress_allows(WEB, OTHER_NS, 443)


def test_rules_without_peers_or_ports_match_all_and_port_forms() -> None:
    anywhere = policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 6443}]}],
        }
    )
    cluster = Cluster(NS, [anywhere])
    assert cluster.egress_allows(WEB, INTERNET, 6443)
    assert not cluster.egress_allows(WEB, INTERNET, 53)  # UDP only: a TCP connection is not
    ranged = policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 9090, "endPort": 9094}]}],
        }
    )
    assert Cluster(NS, [ranged]).egress_allows(WEB, DB, 9093)
    assert not Cluster(NS, [ranged]).egress_allows(WEB, DB, 9095)
    named = policy(
        {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": "http"}]}]}
    )
    assert Cluster(NS, [named]).ingress_allows(DB, WEB, 8080)
    assert not Cluster(NS, [named]).ingress_allows(DB, WEB, 8081)
    everything = policy({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]})
    assert Cluster(NS, [everything]).ingress_allows(INTERNET, WEB, 1)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1", "c": "3"}}, {"a": "1"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
        ({"matchLabels": {"on": True}}, {"on": "True"}, True),
    ],
)
def test_label_selectors(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert matches_selector(selector, labels) is expected
