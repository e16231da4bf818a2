#!/usr/bin/env bash
# Install the real services the tests start themselves (Debian packages): Prometheus and
# promtool, Alertmanager, openssl (a test mail server's certificate), Chromium (the
# dashboard's browser tests, driven by Playwright), poppler-utils (pdftoppm, pdftotext: the
# report's PDF checked), and the fonts and Pango that WeasyPrint renders PDFs with. Skipped when
# present; needs root (or sudo) and apt-get. Without them the tests that need them skip
# locally and fail in CI (CI=true).
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftoppm >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
ldconfig -p 2>/dev/null | grep -q libpangoft2-1.0 || need+=(libpango-1.0-0 libpangoft2-1.0-0)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test-services: no apt-get here; install ${need[*]} yourself" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "test-services: not root and no sudo; install ${need[*]} yourself" >&2
    exit 0
  fi
fi
echo "test-services: installing ${need[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
