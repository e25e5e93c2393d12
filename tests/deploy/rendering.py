"""Render the kustomize overlays and validate what they produce, offline and strictly."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
CRD_SCHEMAS = K8S / "crd-schemas"
KUBERNETES_VERSION = "1.33"

Manifest = dict[str, Any]


def kustomize_binary() -> str:
    """kustomize as scripts/bootstrap.sh installs it (next to the venv's python), or on PATH."""
    beside = Path(sys.executable).parent / "kustomize"
    found = str(beside) if beside.is_file() else shutil.which("kustomize")
    assert found, "kustomize is missing: run scripts/bootstrap.sh"
    return found


@functools.cache
def _build(path: str) -> str:
    result = subprocess.run(
        [kustomize_binary(), "build", path], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kustomize build {path} failed:\n{result.stderr}"
    return result.stdout


def render(overlay: str) -> list[Manifest]:
    """Every resource of an overlay, as kustomize builds it (a fresh copy each call)."""
    return [d for d in yaml.safe_load_all(_build(str(K8S / "overlays" / overlay))) if d]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    [found] = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    return found


# -- schemas ------------------------------------------------------------------------------------


def _strict(node: Any) -> Any:
    """A CRD's OpenAPI schema as JSON Schema that refuses unknown fields, as the API server
    does with strict field validation (`kubectl apply --validate=strict`)."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON Schema, for every vendored CRD."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_SCHEMAS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def schema_errors(manifest: Manifest) -> list[str]:
    """Why a manifest is invalid: strict Kubernetes schemas for built-in kinds, the vendored
    CRD schemas for custom resources; raises KeyError for a kind with no schema here."""
    manifest = copy.deepcopy(manifest)
    key = (manifest["apiVersion"], manifest["kind"])
    if key in crd_schemas():
        validator = jsonschema.Draft202012Validator(crd_schemas()[key])
        return [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(manifest)
        ]
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise KeyError(key) from exc
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def pod_templates(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every Deployment, StatefulSet and Job."""
    found = []
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet", "Job"):
            found.append((f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"]))
    return found
