#!/usr/bin/env bash
# Installs a GPU-capable ONNX Runtime for `--device cuda` into the per-user
# cache where runtime.FindGPULibrary looks first:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/onnx-tdb/onnxruntime-gpu/<package version>/
# holding libonnxruntime.so (a core built with CUDA support),
# libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so.
# Both come from the npm registry: the core from com.github.asus4.onnxruntime,
# the CUDA provider (~165 MB packed) from com.github.asus4.onnxruntime.linux-x64-gpu.
#
# Idempotent: a complete install is left alone, and the tarballs are kept in
# <install>/.download until the install is complete, so a rerun after a
# failure downloads nothing twice. Files are written under temporary names
# and renamed, so a killed run leaves no half-written library under the
# final name.
#
# The provider needs, at run time: an NVIDIA driver, the CUDA runtime
# (cudart, cuBLAS/cuBLASLt, cuFFT, cuRAND) and cuDNN of the major versions it
# was built for, on the library path. This script checks what the dynamic
# loader can find and names what is missing; it installs none of them.
set -euo pipefail
pkg_version=${ORT_GPU_PKG_VERSION:-0.4.9}
core_pkg=com.github.asus4.onnxruntime
gpu_pkg=com.github.asus4.onnxruntime.linux-x64-gpu
root=${XDG_CACHE_HOME:-$HOME/.cache}/onnx-tdb/onnxruntime-gpu
dest=$root/$pkg_version
libs=(libonnxruntime.so libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)

complete() {
  for l in "${libs[@]}"; do [ -s "$dest/$l" ] || return 1; done
}

check_deps() {
  # What the CUDA provider links against that the loader cannot find.
  command -v ldd >/dev/null || return 0
  local missing
  missing=$(ldd "$dest/libonnxruntime_providers_cuda.so" 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
  if [ -n "$missing" ]; then
    echo "install-ort-gpu: the CUDA provider cannot find these libraries (install the CUDA runtime and cuDNN they belong to, or add their folder to LD_LIBRARY_PATH):" >&2
    echo "$missing" | sed 's/^/  /' >&2
  else
    echo "install-ort-gpu: every library the CUDA provider links against was found"
  fi
}

if complete; then
  echo "onnxruntime-gpu $pkg_version: $dest"
  check_deps
  exit 0
fi
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo "install-ort-gpu: the GPU packages are for linux x86_64 only" >&2; exit 1; }
command -v npm >/dev/null || { echo "install-ort-gpu: npm is needed (apt-get install npm)" >&2; exit 1; }
dl=$dest/.download
mkdir -p "$dl"
fetch() { # package -> path of its tarball in $dl, downloaded at most once
  local name=$1 tgz="$dl/$1-$pkg_version.tgz"
  if [ ! -s "$tgz" ]; then
    echo "install-ort-gpu: downloading $name@$pkg_version from the npm registry..." >&2
    (cd "$dl" && npm pack --silent "$name@$pkg_version" >/dev/null)
  fi
  [ -s "$tgz" ] || { echo "install-ort-gpu: npm pack $name@$pkg_version gave no $tgz" >&2; exit 1; }
  echo "$tgz"
}
extract() { # tarball member-in-Plugins/Linux/x64 -> $dest, atomically
  local tgz=$1 lib=$2 member="package/Plugins/Linux/x64/$2"
  tar -xzf "$tgz" -C "$dl" "$member" || { echo "install-ort-gpu: $tgz has no $member" >&2; exit 1; }
  mv "$dl/$member" "$dest/$lib.tmp.$$"
  mv "$dest/$lib.tmp.$$" "$dest/$lib"
}
core=$(fetch "$core_pkg")
extract "$core" libonnxruntime.so
extract "$core" libonnxruntime_providers_shared.so
gpu=$(fetch "$gpu_pkg")
extract "$gpu" libonnxruntime_providers_cuda.so
complete || { echo "install-ort-gpu: install in $dest is incomplete" >&2; exit 1; }
rm -rf "$dl"
echo "onnxruntime-gpu $pkg_version: installed $dest"
check_deps
