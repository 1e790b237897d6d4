#!/usr/bin/env bash
# Builds the CUDA test and benchmark binaries here (no GPU needed to build)
# and gathers them, with the shared libraries a GPU machine may lack, into
# .gpu-bundle/ so they can be carried there and run by tests/gpu/run.sh:
#   scripts/gpu_bundle.sh && (on the GPU machine) tests/gpu/run.sh .gpu-bundle
# Binaries and libraries are stripped (the bundle travels with the working
# tree under a 64 MiB cap). .gpu-bundle/wheels gets the grpcio and protobuf
# wheels (CPython 3.12, manylinux) at the versions of this repo's .venv, which
# the committed Python stubs need (and grpcio's typing_extensions), for the
# Python tests run.sh runs there.
# BUILD (default build-cuda) picks the build directory. To fit the cap, that
# build makes device code for CUDA_ARCHS only (default 90: the H100 and H200
# the bundle is for; PTX included, so newer GPUs JIT it) and compresses it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-cuda}
CUDA_ARCHS=${CUDA_ARCHS:-90}
OUT=.gpu-bundle
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if "$NVCC" --help 2>/dev/null | grep -q -- '--compress-mode'; then
  compress="--compress-mode=size"
else
  compress="-Xfatbin=-compress-all"
fi
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTENSORCAST_CUDA=ON \
  -DTENSORCAST_PYTHON="$PWD/.venv/bin/python" \
  -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS" -DCMAKE_CUDA_FLAGS="$compress" >/dev/null
targets=(cast_cuda_test ops_cuda_test cuda_memory_resource_test
         gpu_integration_test cuda_ipc_test load_integration_test
         tensorcast-server tensorcast tensorcast-load
         tensorcast-bench-cuda-cast tensorcast-bench-cuda-pool
         tensorcast-bench-cuda-fetch)
cmake --build "$BUILD" -j2 --target "${targets[@]}"
rm -rf $OUT && mkdir -p $OUT/lib $OUT/wheels
for t in "${targets[@]}"; do
  cp "$BUILD/bin/$t" $OUT/
  # Everything it links that is not the C library or the driver.
  ldd "$BUILD/bin/$t" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|libgcc_s|ld-linux|libcuda)\.so' |
    xargs -r -I{} cp -L {} $OUT/lib/
done
chmod -R u+w $OUT
find $OUT -maxdepth 2 -type f -exec strip --strip-unneeded {} +

# The Python client's runtime at the versions the stubs were made for, and
# what grpcio itself needs (typing_extensions, a pure-Python wheel).
for pkg in grpcio protobuf typing_extensions; do
  version=$("$PY" -c "import importlib.metadata as m; print(m.version('$pkg'))")
  got=0
  for platforms in \
      "manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64" \
      "manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_24_x86_64 manylinux_2_5_x86_64"; do
    args=()
    for p in $platforms; do args+=(--platform "$p"); done
    if "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${args[@]}" -d $OUT/wheels "$pkg==$version"; then
      got=1
      break
    fi
  done
  if [ "$got" -eq 0 ]; then
    echo "gpu_bundle.sh: WARNING: no cp312 manylinux wheel of $pkg==$version;" \
         "the Python tests will use the GPU machine's own $pkg" >&2
  fi
done
ls $OUT/wheels
# What travels to the GPU machine: the files git tracks or would track, and
# the bundle (64 MiB at most in all).
du -sh $OUT
tree_kib=$(git ls-files -co --exclude-standard -z | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
bundle_kib=$(du -sk $OUT | cut -f1)
echo "working tree ${tree_kib} KiB + bundle ${bundle_kib} KiB =" \
     "$(( (tree_kib + bundle_kib) / 1024 )) MiB (the cap is 64 MiB)"
