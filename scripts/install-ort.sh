#!/usr/bin/env bash
# Installs the ONNX Runtime shared library into the per-user cache that
# runtime.FindLibrary searches: ${XDG_CACHE_HOME:-$HOME/.cache}/onnx-tdb/onnxruntime/<version>/.
# The library comes from the npm registry (onnxruntime-node ships it for linux x64),
# so nothing beyond the package registries is needed. Idempotent.
set -euo pipefail
version=${ORT_VERSION:-1.30.0}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/onnx-tdb/onnxruntime/$version
lib=$cache/libonnxruntime.so.1
if [ -s "$lib" ]; then
  echo "onnxruntime $version: $lib"
  exit 0
fi
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "install-ort: no onnxruntime-node build for $(uname -m)" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "install-ort: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tar -xzf "$work"/onnxruntime-node-"$version".tgz -C "$work" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
mkdir -p "$cache"
cp "$work/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp.$$"
mv "$lib.tmp.$$" "$lib"
echo "onnxruntime $version: installed $lib"
