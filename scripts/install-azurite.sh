#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator, npm package "azurite") into the
# per-user cache that export/fetch/fetchtest searches:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/onnx-tdb/azurite/<version>/node_modules/.bin/azurite-blob
# The fetch tests run its blob server on loopback. npm only; idempotent.
# 3.35.0 is the newest release whose engines field accepts Node 20 (3.36+ need Node >= 21).
set -euo pipefail
version=${AZURITE_VERSION:-3.35.0}
dir=${XDG_CACHE_HOME:-$HOME/.cache}/onnx-tdb/azurite/$version
bin=$dir/node_modules/.bin/azurite-blob
if [ -x "$bin" ]; then
  echo "azurite $version: $bin"
  exit 0
fi
command -v npm >/dev/null || { echo "install-azurite: npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$(dirname "$dir")"
work=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
npm install --prefix "$work" --no-audit --no-fund --no-save --loglevel=error "azurite@$version" >&2
[ -x "$work/node_modules/.bin/azurite-blob" ] || { echo "install-azurite: azurite-blob missing after npm install" >&2; exit 1; }
# Another run may have finished first; keep whichever landed.
mv -T "$work" "$dir" 2>/dev/null || true
[ -x "$bin" ] || { echo "install-azurite: $bin not found" >&2; exit 1; }
echo "azurite $version: installed $bin"
