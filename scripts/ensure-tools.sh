#!/usr/bin/env bash
# Installs the Debian packages the proxy and browser tests use when they are missing:
# nginx (crates/sessiond/tests/proxy_nginx.rs, browser.rs), caddy (proxy_caddy.rs),
# chromium + chromium-driver (browser.rs). Idempotent; never starts a system service
# (the tests run their own nginx / caddy / chromedriver in temp dirs on free ports).
#
# Traefik and Envoy are not Debian packages: their configurations in examples/ are
# documented only and not installed here.
set -euo pipefail

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v caddy >/dev/null || missing+=(caddy)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v openssl >/dev/null || missing+=(openssl)

if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-tools: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Do not start the packaged nginx / caddy services on install (no systemd here, and the
  # tests want port 80 free anyway): policy-rc.d exit 101 = "action forbidden".
  rcd_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    rcd_created=1
  fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  if [ "$rcd_created" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
echo "ensure-tools: nginx, caddy, chromium and chromedriver are installed" >&2
