#!/usr/bin/env bash
# Installs a headless-capable Chromium for the serve package's browser test
# (serve/browser_test.go drives it through chromedp). Debian's "chromium"
# package via apt-get; idempotent: does nothing when a browser is on PATH.
# Without root (or sudo) it says what to run and exits 0, so `make test`
# goes on and the browser test skips with a visible message.
set -euo pipefail
for b in chromium chromium-browser google-chrome google-chrome-stable headless-shell; do
  if command -v "$b" >/dev/null 2>&1; then
    echo "chromium: $(command -v "$b")"
    exit 0
  fi
done
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "install-chromium: not root and no sudo: run 'apt-get install -y chromium' as root; the browser test will skip" >&2
    exit 0
  fi
fi
command -v apt-get >/dev/null || { echo "install-chromium: no apt-get here; install Chromium by hand; the browser test will skip" >&2; exit 0; }
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2; }; then
  echo "install-chromium: apt-get could not install chromium; the browser test will skip" >&2
  exit 0
fi
command -v chromium >/dev/null || { echo "install-chromium: chromium missing after apt-get install; the browser test will skip" >&2; exit 0; }
echo "chromium: installed $(command -v chromium)"
