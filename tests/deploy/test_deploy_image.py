"""The Dockerfile builds what the services need, and runs it unprivileged."""

from __future__ import annotations

import fnmatch
import re
import tomllib

from tests.deploy.rendering import REPO
from tests.deploy.service_catalog import SERVICES

DOCKERFILE = (REPO / "Dockerfile").read_text()
PACKAGES = {"libs/contracts": "funnel_contracts", "libs/servicekit": "funnel_servicekit"} | {
    f"services/{s.name}": s.module for s in SERVICES.values()
}


def test_multi_stage_non_root_and_no_build_tools_in_the_final_stage() -> None:
    stages = re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]
    assert len(stages) == 2
    final = stages[-1]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "COPY --from=build /opt/funnel /opt/funnel" in final
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in final
    assert "FUNNEL_HTTP_HOST=0.0.0.0" in final


def test_the_image_installs_every_package_the_services_import() -> None:
    for folder in PACKAGES:
        assert (REPO / folder / "pyproject.toml").is_file()
        assert f"./{folder}" in DOCKERFILE, f"{folder} is not installed in the image"
    assert "COPY libs/contracts libs/contracts" in DOCKERFILE
    assert "COPY libs/servicekit libs/servicekit" in DOCKERFILE
    assert "COPY services services" in DOCKERFILE


def test_every_data_file_of_a_package_is_declared_package_data() -> None:
    """The image installs the packages (not editable): an undeclared file would be missing."""
    for folder, package in PACKAGES.items():
        pyproject = tomllib.loads((REPO / folder / "pyproject.toml").read_text())
        globs = pyproject["tool"]["setuptools"].get("package-data", {}).get(package, [])
        root = REPO / folder / "src" / package
        for path in root.rglob("*"):
            if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(root).as_posix()
            if "/" in relative and (root / relative.split("/")[0] / "__init__.py").exists():
                sub = relative.split("/")[0]
                inner = relative.split("/", 1)[1]
                sub_globs = (
                    pyproject["tool"]["setuptools"]
                    .get("package-data", {})
                    .get(f"{package}.{sub}", [])
                )
                if any(fnmatch.fnmatch(inner, g) for g in sub_globs):
                    continue
            assert any(fnmatch.fnmatch(relative, g) for g in globs), (
                f"{folder}: {relative} is not in [tool.setuptools.package-data] {package}"
            )
