#!/usr/bin/env bash
# Runs Tern's whole test suite on a Debian machine. Installs the real peers the tests
# talk to (Dovecot, Postfix, swaks, Python with dkimpy, opendkim-tools, curl, mbsync,
# offlineimap, fetchmail) with apt-get when they are missing, then runs every test of
# the workspace. Tests start their own peers on free loopback ports and clean up.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(dovecot-core dovecot-imapd dovecot-pop3d python3 ca-certificates curl
  isync offlineimap3 fetchmail postfix swaks python3-dkim opendkim-tools dovecot-lmtpd
  libnet-ssleay-perl libio-socket-ssl-perl)
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

cargo test --workspace --locked
