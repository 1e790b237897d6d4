#!/usr/bin/env bash
# Builds the CUDA test and benchmark binaries here (no GPU needed to build)
# and gathers them, with the shared libraries a GPU machine may lack, into
# .gpu-bundle/ so they can be carried there and run by tests/gpu/run.sh:
#   scripts/gpu_bundle.sh && (on the GPU machine) tests/gpu/run.sh .gpu-bundle
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-cuda
OUT=.gpu-bundle
cmake -S . -B $BUILD -DCMAKE_BUILD_TYPE=Release -DTENSORCAST_CUDA=ON \
  -DTENSORCAST_PYTHON="$PWD/.venv/bin/python" >/dev/null
targets=(cast_cuda_test ops_cuda_test cuda_memory_resource_test tensorcast-bench-cuda-cast
         tensorcast-bench-cuda-pool)
cmake --build $BUILD -j2 --target "${targets[@]}"
rm -rf $OUT && mkdir -p $OUT/lib
for t in "${targets[@]}"; do
  cp $BUILD/bin/$t $OUT/
  # Everything it links that is not the C library or the driver.
  ldd $BUILD/bin/$t | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|libgcc_s|ld-linux|libcuda)\.so' |
    xargs -r -I{} cp -L {} $OUT/lib/
done
du -sh $OUT
