#!/usr/bin/env bash
# Installs the Debian packages the local runtime and the tests use, when this machine lets us.
# Without root or apt it prints what is missing and carries on: the runtime has fallbacks.
#   bubblewrap  gives steps their own /tmp and mounts (without it: no mount isolation)
#   busybox     the applets of the alpine/busybox images the Argo example corpus uses (`nc -lk -e`);
#               `make conformance` links the ones the host lacks into a PATH directory of its own
#   nats-server the JetStream server the cluster event bus tests start (tests/natsserver.py); Debian puts
#               it in /usr/sbin
#   git, openssl sensors' git trigger sources run git; the tests serve a git repository and make a TLS
#               certificate with openssl
set -u
want=()
command -v bwrap >/dev/null 2>&1 || want+=(bubblewrap)
command -v busybox >/dev/null 2>&1 || want+=(busybox)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || want+=(nats-server)
command -v git >/dev/null 2>&1 || want+=(git)
command -v openssl >/dev/null 2>&1 || want+=(openssl)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "sysdeps: not installing ${want[*]} (needs root and apt); the runtime and tests fall back" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${want[@]}" >/dev/null 2>&1 \
  || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${want[@]}" >/dev/null 2>&1; } \
  || echo "sysdeps: apt-get could not install ${want[*]}; the runtime and tests fall back" >&2
exit 0
