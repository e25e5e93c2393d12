"""A small evaluator of Kubernetes NetworkPolicy semantics (networking.k8s.io/v1), for checking
rendered overlays offline: may this endpoint open a TCP connection to that one on this port?

No analyzer of NetworkPolicies installs from the package registries this project uses, so this
follows the API reference, and tests/deploy/test_netpol_evaluator.py checks it case by case:

- A pod is isolated for ingress (egress) when a policy of its namespace selects it with that
  policy type; `policyTypes` absent means Ingress, plus Egress when the policy has `egress`.
- An isolated direction allows what the union of its selecting policies' rules allows; a
  connection needs both the source's egress and the destination's ingress to allow it.
- A rule with no `from`/`to` matches every peer, with no `ports` every port. A peer with only
  `podSelector` means pods of the policy's namespace; with `namespaceSelector` pods of the
  matching namespaces (and the `podSelector` beside it); `ipBlock` matches addresses (here
  any endpoint's, pods' included: the stricter reading, as implementations differ).
- A named port resolves against the destination pod's container ports; `endPort` is a range.
- Endpoints outside the overlay's namespace have no policies here: not isolated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Policy = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace set) or an address outside the cluster (namespace None)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports

    def __hash__(self) -> int:
        return hash((self.name, self.ip, self.namespace))


def matches_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions, ANDed; {} matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], [str(v) for v in expr.get("values", [])]
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def _policy_types(policy: Policy) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


def _in_block(ip: str, block: Mapping[str, Any]) -> bool:
    address = ipaddress.ip_address(ip)
    network = ipaddress.ip_network(block["cidr"], strict=False)
    if address.version != network.version or address not in network:
        return False
    return not any(
        address in ipaddress.ip_network(e, strict=False)
        for e in block.get("except", [])
        if ipaddress.ip_network(e, strict=False).version == address.version
    )


def _peer_matches(peer: Mapping[str, Any], other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        return _in_block(other.ip, peer["ipBlock"])
    if other.namespace is None:
        return False  # pod and namespace selectors select pods only
    if "namespaceSelector" in peer:
        if not matches_selector(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return matches_selector(peer.get("podSelector"), other.labels)


def _port_matches(
    ports: Iterable[Mapping[str, Any]] | None, destination: Endpoint, port: int
) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        if "port" not in entry:
            return True  # every port of the protocol
        wanted = entry["port"]
        if isinstance(wanted, str):
            if destination.ports.get(wanted) == port:
                return True
            continue
        if wanted == port or (wanted <= port <= entry.get("endPort", wanted)):
            return True
    return False


@dataclass
class Cluster:
    """The policies of one namespace (an overlay's), and how to evaluate a connection."""

    namespace: str
    policies: list[Policy]

    def _selecting(self, pod: Endpoint, direction: str) -> list[Policy]:
        if pod.namespace != self.namespace:
            return []
        return [
            p
            for p in self.policies
            if direction in _policy_types(p)
            and matches_selector(p["spec"]["podSelector"], pod.labels)
        ]

    def egress_allows(self, source: Endpoint, destination: Endpoint, port: int) -> bool:
        selecting = self._selecting(source, "Egress")
        if not selecting:
            return True
        for policy in selecting:
            for rule in policy["spec"].get("egress") or []:
                peers = rule.get("to")
                if (
                    not peers or any(_peer_matches(p, destination, self.namespace) for p in peers)
                ) and (_port_matches(rule.get("ports"), destination, port)):
                    return True
        return False

    def ingress_allows(self, source: Endpoint, destination: Endpoint, port: int) -> bool:
        selecting = self._selecting(destination, "Ingress")
        if not selecting:
            return True
        for policy in selecting:
            for rule in policy["spec"].get("ingress") or []:
                peers = rule.get("from")
                if (not peers or any(_peer_matches(p, source, self.namespace) for p in peers)) and (
                    _port_matches(rule.get("ports"), destination, port)
                ):
                    return True
        return False

    def allows(self, source: Endpoint, destination: Endpoint, port: int) -> bool:
        """A TCP connection from `source` to `destination` on `port` gets through."""
        return self.egress_allows(source, destination, port) and self.ingress_allows(
            source, destination, port
        )
