#!/usr/bin/env bash
# Regenerates graphs/onnxpb/onnx.pb.go from the onnx.proto that Debian's
# libonnx-dev package ships (ONNX 1.12, IR version 8). The .proto itself is not
# committed; this script fetches it from the Debian archive each time.
#
# Needs: apt-get (Debian), protoc (package protobuf-compiler) and
# protoc-gen-go v1.36.12 (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download libonnx-dev >/dev/null)
dpkg -x "$work"/libonnx-dev_*.deb "$work/root"
protoc --proto_path="$work/root/usr/include" \
  --go_out=graphs/onnxpb --go_opt=paths=source_relative \
  --go_opt=Monnx/onnx.proto=github.com/onnx-tdb/onnx-tdb/graphs/onnxpb \
  onnx/onnx.proto
mv graphs/onnxpb/onnx/onnx.pb.go graphs/onnxpb/onnx.pb.go
rmdir graphs/onnxpb/onnx
