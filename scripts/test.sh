#!/usr/bin/env bash
# Runs Tern's whole test suite on a Debian machine. Installs the real peers the tests
# talk to (Dovecot, Postfix, swaks, Python with dkimpy and jsonschema (the API's answers
# checked against its OpenAPI document), opendkim-tools, curl, mbsync,
# offlineimap, fetchmail, pebble for the ACME tests, and Chromium for the browser tests)
# with apt-get when they are missing, and playwright-core (which drives that Chromium)
# with npm into tests/browser/node_modules, then runs every test of the workspace.
# Tests start their own peers on free loopback ports and clean up.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(dovecot-core dovecot-imapd dovecot-pop3d python3 ca-certificates curl
  isync offlineimap3 fetchmail postfix swaks python3-dkim opendkim-tools dovecot-lmtpd
  libnet-ssleay-perl libio-socket-ssl-perl chromium pebble python3-jsonschema)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "Installing test peers: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed: install Rust 1.95 or newer from https://rustup.rs" >&2
  exit 1
fi

if ! command -v npm >/dev/null; then
  echo "npm is not installed: install Node.js 20 or newer with npm (Debian: nodejs npm)" >&2
  exit 1
fi
if [ -f tests/browser/package-lock.json ]; then
  npm ci --prefix tests/browser --no-audit --no-fund
else
  npm install --prefix tests/browser --no-audit --no-fund
fi

# A clean clone gains nothing from incremental compilation's caches, only gigabytes of
# disk; a developer's own runs keep it.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
echo "Disk free for the build in $target: $(df -h --output=avail "$target" | tail -1 | tr -d ' ')"

cargo test --workspace --locked
