#!/usr/bin/env bash
# Installs everything tlstap needs to build, test, run the demo and the benchmark, on Debian 12.
# Idempotent: packages already present are left as they are.
set -euo pipefail

packages=(
  # build
  cmake g++ make pkg-config capnproto libcapnp-dev libgnutls28-dev libevent-dev
  libseccomp-dev libpcap-dev libgtest-dev libgmock-dev
  # tests and demo: real peers and a real pcap reader
  tshark gnutls-bin openssl curl nginx-light nghttp2-server python3 netcat-openbsd socat mandoc
  iproute2 procps psmisc dnsmasq-base
)
if [ "${TLSTAP_BENCH:-0}" = 1 ]; then
  packages+=(hitch haproxy wrk nghttp2-client)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: run as root to install: ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  # tshark asks whether non-root users may capture unless told not to ask.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The unprivileged users a root start of tlstap-front and tlstap-recorder drops to (the tests
# run as root start them that way too).
for user in tlstap tlstap-rec; do
  if ! id -u "$user" > /dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "install-deps: run as root to create the system user $user" >&2
      exit 1
    fi
    useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
  fi
done
