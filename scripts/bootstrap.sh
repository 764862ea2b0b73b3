#!/usr/bin/env bash
# Install everything meterstream needs on a fresh machine, idempotently:
#   Java 17 + Maven (for the Kafka broker jars), Go (for stripe-mock and helm), a
#   virtualenv with the package and its extras (METERSTREAM_EXTRAS, default dev: every
#   part and the test tools; see pyproject.toml), the Kafka jars from Maven Central,
#   stripe-mock, helm (for the chart's offline checks) and Debian's prometheus (promtool).
# Re-running it is cheap: every step checks before it installs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
EXTRAS=${METERSTREAM_EXTRAS:-dev}

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  say "apt-get install $*"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
have java || missing+=(openjdk-17-jre-headless)
have mvn || missing+=(maven)
have go || missing+=(golang-go)
have promtool || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.meterstream-installed
want="$(sha256sum pyproject.toml | cut -c1-16)-$EXTRAS"
# The install compiles the core's hot modules (setup.py, mypyc) from streams/core's
# sources: after an edit there, they are compiled again (until then the package runs
# their Python source, and says so).
core_stamp=.venv/.meterstream-core-compiled
core_want="$(cat setup.py streams/core/*.py | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the package with extras [$EXTRAS] (compiling the core: about a minute)"
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
  echo "$core_want" > "$core_stamp"
elif [ "$(cat "$core_stamp" 2>/dev/null)" != "$core_want" ]; then
  say "compiling the core again (streams/core or setup.py changed)"
  .venv/bin/pip install -q --no-deps -e .
  echo "$core_want" > "$core_stamp"
fi

say "Kafka broker jars"
deploy/kafka-local/kafka-local fetch

STRIPE_MOCK_VERSION=v0.203.0
bin="$ROOT/.cache/bin"
if [ ! -x "$bin/stripe-mock" ]; then
  say "stripe-mock $STRIPE_MOCK_VERSION (go install)"
  mkdir -p "$bin"
  GOBIN="$bin" go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION"
fi

# helm for deploy/helm's checks (helm lint / template, offline). The version is part of
# the file name, so changing HELM_VERSION installs the new one.
HELM_VERSION=v3.22.0
if [ ! -x "$bin/helm-$HELM_VERSION" ]; then
  say "helm $HELM_VERSION (go install; a few minutes the first time)"
  mkdir -p "$bin"
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$tmp/helm" "$bin/helm-$HELM_VERSION"
  rmdir "$tmp"
fi
ln -sfn "helm-$HELM_VERSION" "$bin/helm"
say "ready"
