#!/usr/bin/env bash
# Install everything k2 and its local stack need, from package registries only. Idempotent and
# non-interactive (CI has no stdin): a second run finds everything in place and does (almost) nothing.
#
#   scripts/install.sh            # as root (Debian packages); K2_HOME / K2_CACHE_DIR pick the cache
#
# 1. Debian packages the stack runs, only those missing: postgresql, prometheus, nginx, maven, openssl, a JRE.
#    Their services are never started by the install (policy-rc.d); `k2 stack up` starts our own.
# 2. The k2 Python package.
# 3. Stack artifacts into the cache ($K2_CACHE_DIR, default $K2_HOME/cache, default ~/.k2/cache):
#    Apache Kafka broker jars and Apicurio Registry, both from Maven Central; Toxiproxy (the fault suite's
#    network faults), built with `go install` from the Go module proxy.
#    Spark for reading the lake (the Spark read test, benchmarks/peers): pyspark from PyPI in a venv of its
#    own under the cache, the Iceberg runtime jar and JDBC drivers from Maven Central (k2cli/stack/spark.py).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
export DEBIAN_FRONTEND=noninteractive
started=$SECONDS

say() { printf 'install.sh: %s\n' "$*"; }

# ------------------------------------------------------------------------------------------------
# 1. Debian packages (only the missing ones)
# ------------------------------------------------------------------------------------------------
have_java17() {
    local j
    for j in "${K2_JAVA_HOME:-}/bin/java" "${JAVA_HOME:-}/bin/java" "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
        [ -x "$j" ] || continue
        if "$j" -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; then return 0; fi
    done
    return 1
}

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # test certificates for the TLS checks
command -v gcc >/dev/null 2>&1 || missing+=(gcc)  # builds the compiled decoder (k2cli/_avro_arrow.c)
"$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null || missing+=(python3-dev)
have_java17 || missing+=(openjdk-17-jre-headless)
# the REST catalog's launcher runs from source (java File.java), which needs the JDK's compiler module
have_java17 && { command -v javac >/dev/null 2>&1 || ls /usr/lib/jvm/*/bin/javac >/dev/null 2>&1; } \
    || missing+=(openjdk-17-jdk-headless)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "error: missing Debian packages: ${missing[*]}; run this script as root (sudo)" >&2
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Keep package installs from starting their services: k2 stack runs its own instances.
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    trap 'if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
    if ! ls /var/lib/apt/lists/*Packages* >/dev/null 2>&1; then
        apt-get update -q
    fi
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        apt-get update -q   # stale package lists: refresh once and retry
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
else
    say "Debian packages: all present"
fi
say "step 1 done at $((SECONDS - started))s"

# ------------------------------------------------------------------------------------------------
# 2. The k2 Python package
# ------------------------------------------------------------------------------------------------
# The locked dependencies (uv.lock) into $REPO/.venv, with k2 itself installed editable (setup.py builds its
# compiled decoder, k2cli/_avro_arrow.c, when a C compiler is there; without one k2 decodes with fastavro).
# Bytecode is compiled here, once: a process that may not write .pyc files (PYTHONDONTWRITEBYTECODE) would
# otherwise compile ~800 modules on every start (+2 s for `k2 consume`).
export UV_PYTHON_DOWNLOADS=never
if ! command -v uv >/dev/null 2>&1 && ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
    say "installing uv"
    "$PYTHON" -m pip install -q uv
fi
UV="uv"; command -v uv >/dev/null 2>&1 || UV="$PYTHON -m uv"
(cd "$REPO" && $UV sync --frozen --extra dev --compile-bytecode --python "$(command -v "$PYTHON")" -q)
"$REPO/.venv/bin/python" -m compileall -q "$REPO/k2cli" >/dev/null
if ! "$REPO/.venv/bin/python" -c "import k2cli._avro_arrow" 2>/dev/null; then
    say "warning: the compiled decoder was not built (no C compiler or Python headers?): k2 consume decodes with fastavro"
fi
say "k2 installed in $REPO/.venv (run it as $REPO/.venv/bin/k2, or activate the venv)"
say "step 2 done at $((SECONDS - started))s"

# ------------------------------------------------------------------------------------------------
# 3. Stack artifacts into the cache (Kafka jars, Apicurio Registry, Toxiproxy) — the same code `k2 stack up`
#    runs on first use (Toxiproxy: the fault suite's fixture). Only the standard library is needed, so this
#    works before step 2 too.
# ------------------------------------------------------------------------------------------------
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m k2cli.stack.install
say "step 3 done at $((SECONDS - started))s"

# ------------------------------------------------------------------------------------------------
# 4. The `docker compose` plugin, only where a docker client lacks it, so `docker compose config -q`
#    can check docker-compose.yml on hosts without a Docker engine. Built from the Go module proxy
#    at a pinned version into the cache (go install cannot build it: its go.mod has replace lines).
#    K2_INSTALL_COMPOSE_PLUGIN=0 skips it (scripts/demo.sh: the pipeline itself never needs it).
# ------------------------------------------------------------------------------------------------
COMPOSE_VERSION="v2.40.3"
if [ "${K2_INSTALL_COMPOSE_PLUGIN:-1}" = "0" ]; then
    say "step 4 skipped (K2_INSTALL_COMPOSE_PLUGIN=0): no docker compose plugin build"
elif command -v docker >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1 && command -v go >/dev/null 2>&1; then
    cache="${K2_CACHE_DIR:-${K2_HOME:-$HOME/.k2}/cache}/docker-compose-$COMPOSE_VERSION"
    if [ ! -x "$cache/docker-compose" ]; then
        say "building docker compose $COMPOSE_VERSION from the Go module proxy (a few minutes, once)"
        dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" |
              "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
        mkdir -p "$cache"
        (cd "$dir" && GOFLAGS=-mod=mod go build -trimpath -o "$cache/docker-compose" ./cmd)
    fi
    mkdir -p "$HOME/.docker/cli-plugins"
    ln -sf "$cache/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
fi
say "all done in $((SECONDS - started))s"
