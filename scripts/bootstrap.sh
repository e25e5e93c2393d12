#!/usr/bin/env bash
# Set up what is missing for running and testing Funnel on a Debian machine, idempotently:
# system packages (Java, Maven, PostgreSQL), the Python virtualenv with pinned packages,
# the Apache Kafka jars and kustomize (cached, so later runs need no network).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
"$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)  # the load generator of bench/
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # the browser of the embed.js e2e tests

if ((${#missing[@]})); then
  echo "bootstrap: installing system packages: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

stamp=.venv/.bootstrap-stamp
wanted="$(cat requirements-dev.txt constraints.txt libs/*/pyproject.toml services/*/pyproject.toml | sha256sum)"
if [[ ! -f $stamp || "$(cat "$stamp")" != "$wanted" ]]; then
  echo "bootstrap: installing Python packages into .venv"
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q -c constraints.txt -r requirements-dev.txt
  echo "$wanted" > "$stamp"
fi

# kustomize (renders deploy/k8s for tests/deploy): built once from the Go module proxy, cached.
KUSTOMIZE_VERSION=v5.8.1
cache="${FUNNEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/funnel}"
kustomize_dir="$cache/kustomize-$KUSTOMIZE_VERSION"
if [[ ! -x $kustomize_dir/kustomize ]]; then
  command -v go >/dev/null 2>&1 || { echo "bootstrap: Go is needed to build kustomize" >&2; exit 1; }
  echo "bootstrap: building kustomize $KUSTOMIZE_VERSION"
  mkdir -p "$kustomize_dir"
  GOTOOLCHAIN=local GOBIN="$kustomize_dir" GOFLAGS=-mod=mod \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi
ln -sf "$kustomize_dir/kustomize" .venv/bin/kustomize

# promtool (the alert rules' unit tests, deploy/k8s/monitoring): taken out of Debian's
# prometheus package, cached; the package itself is not installed (no Prometheus server runs).
promtool_dir="$cache/promtool"
if [[ ! -x $promtool_dir/usr/bin/promtool ]]; then
  echo "bootstrap: fetching promtool from Debian's prometheus package"
  rm -rf "$promtool_dir" && mkdir -p "$promtool_dir"
  as_root=""
  [[ $(id -u) -eq 0 ]] || as_root="sudo"
  (cd "$promtool_dir" \
    && { apt-get download prometheus >/dev/null 2>&1 \
         || { $as_root apt-get update -qq && apt-get download prometheus >/dev/null; }; } \
    && dpkg-deb -x prometheus_*.deb . && rm prometheus_*.deb)
fi
ln -sf "$promtool_dir/usr/bin/promtool" .venv/bin/promtool

.venv/bin/python -c "from funnel_devstack.kafka import default_cache_dir, ensure_kafka_jars as e; e(default_cache_dir())"
echo "bootstrap: ready"
