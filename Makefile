# tensorcast: the two commands are `make run` and `make test`.
# Every target installs what is missing first, so each works on a fresh
# Debian 12 machine (root, Debian packages and PyPI reachable).

BUILD_DIR  ?= build
ASAN_DIR   ?= build-asan
TSAN_DIR   ?= build-tsan
FUZZ_DIR   ?= build-fuzz
TSA_DIR    ?= build-tsa
FUZZ_SECONDS ?= 60
JOBS       ?= 2
LISTEN     ?= 127.0.0.1:50051
SERVER_FLAGS ?=
VENV       := .venv
PYTHON     := $(VENV)/bin/python
CMAKE_FLAGS ?=
# UPGRADE=1: make setup installs the newest releases instead of the pins in
# scripts/constraints.txt (README.md, "Pinned versions").
UPGRADE    ?= 0

.PHONY: all setup constraints build run test test-unit test-go test-asan test-tsan test-thread-safety lint lint-docker lint-deploy test-container test-container-cuda test-wheel wheel check-standalone fuzz bench format clean

all: build

setup:
	TENSORCAST_UPGRADE=$(UPGRADE) ./scripts/setup.sh

# Rewrites scripts/constraints.txt's pins from the venv, keeping its comment
# lines: after make setup UPGRADE=1 and a make test that passes. The venv
# then holds the pins, which the next make setup records.
constraints:
	{ grep '^#' scripts/constraints.txt; \
	  $(VENV)/bin/pip freeze --all --exclude pip --exclude tensorcast; \
	} >scripts/constraints.txt.new
	mv scripts/constraints.txt.new scripts/constraints.txt
	rm -f $(VENV)/.installed

# scripts/build.sh, shared with the Docker images: configures $(BUILD_DIR)
# (Release) when it has no CMakeCache.txt yet, then builds it. $(CMAKE_FLAGS)
# go on its command line, so the shell splits them as it always did; the
# environment's CMAKE_FLAGS and BUILD_TYPE, which it also reads, are set here.
build: setup
	BUILD_DIR=$(BUILD_DIR) BUILD_TYPE=Release JOBS=$(JOBS) CMAKE_FLAGS= \
	  ./scripts/build.sh -DTENSORCAST_PYTHON=$(abspath $(PYTHON)) $(CMAKE_FLAGS)

run: build
	$(BUILD_DIR)/bin/tensorcast-server --listen=$(LISTEN) $(SERVER_FLAGS)

# ThreadSanitizer over the store, pool and streaming unit tests: the code
# whose locks and atomics carry the server's concurrency. (The integration
# tests are left to ASan: Debian's gRPC and abseil are not built for TSan,
# so it would report their internals.)
test-tsan: setup
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTENSORCAST_SANITIZE=thread -DTENSORCAST_BUILD_BENCH=OFF \
	  -DTENSORCAST_CUDA=OFF \
	  -DTENSORCAST_PYTHON=$(abspath $(PYTHON)) $(CMAKE_FLAGS)
	cmake --build $(TSAN_DIR) -j$(JOBS) --target memory_test store_test
	cd $(TSAN_DIR) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j$(JOBS) --timeout 900 \
	  -R '^(memory_test|store_test)$$'

# Everything, the fast tier first so that drift or a broken unit fails in
# minutes: the checks that need no build (make lint), the unit tests, the
# thread-safety build; then the integration tests (ctest's other labels:
# integration, and gpu, which skip without a GPU), the Python client's and
# the Go client's, the sanitizer passes, and each fuzzer for a minute.
test: lint
	$(MAKE) test-unit
	$(MAKE) test-thread-safety
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) --timeout 600 -LE unit
	$(MAKE) test-python
	$(MAKE) test-go
	$(MAKE) test-wheel
	$(MAKE) test-asan
	$(MAKE) test-tsan
	$(MAKE) fuzz FUZZ_SECONDS=60

# The unit tests alone (ctest's label unit): no server process, seconds.
test-unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) --timeout 600 -L unit

# The checks that need no build, in seconds: that nothing reads outside the
# repository, clang-format, ruff, mypy and shellcheck (scripts/lint.sh), the
# Docker files' (make lint-docker) and the Kubernetes manifests' (make
# lint-deploy).
lint: check-standalone setup
	./scripts/lint.sh
	./scripts/check_docker.sh
	./scripts/check_deploy.sh

# Clang's thread-safety analysis, an error on our targets
# (cmake/tensorcast.cmake): the server's and the clients' code must hold the
# lock each ABSL_GUARDED_BY names (common/mutex.h). A compile without
# tests, optimisation or debug info: only the compiler's checks matter.
test-thread-safety: setup
	cmake -S . -B $(TSA_DIR) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG= \
	  -DCMAKE_CXX_COMPILER=clang++ -DTENSORCAST_BUILD_TESTS=OFF \
	  -DTENSORCAST_BUILD_BENCH=OFF -DTENSORCAST_CUDA=OFF
	cmake --build $(TSA_DIR) -j$(JOBS)

# The Python client: install the package as a user would (not editable), then
# run its tests against the server just built. It is built with the venv's
# setuptools (pinned, no download), and the native extension
# must build: TENSORCAST_REQUIRE_NATIVE=1 makes a failure stop the install
# with the compiler's error rather than leave the pure-Python client.
.PHONY: test-python
test-python: build
	TENSORCAST_REQUIRE_NATIVE=1 $(VENV)/bin/pip install -q \
	  --disable-pip-version-check --force-reinstall --no-deps \
	  --no-build-isolation ./client/python
	TENSORCAST_SERVER_BIN=$(abspath $(BUILD_DIR))/bin/tensorcast-server \
	  TENSORCAST_REQUIRE_NATIVE=1 $(PYTHON) -m pytest -q tests/python

# The Go client (client/go, docs/go.md): gofmt, stubs generated from proto/
# with Debian's protoc-gen-go and protoc-gen-go-grpc into $(BUILD_DIR)/go,
# go vet, and go test against the server just built, offline over Debian's
# Go packages (scripts/test_go.sh). Fails, saying what to install, where
# make setup could not install a Go toolchain.
test-go: build
	BUILD_DIR=$(BUILD_DIR) PYTHON=$(PYTHON) ./scripts/test_go.sh

# The Python client as a binary wheel in dist/: tensorcast._native (one
# abi3 build for CPython 3.11 and later) with every shared library it needs
# bundled by auditwheel (gRPC, abseil, OpenSSL...), so `pip install` of it
# gets the native path on a machine with no compiler and no gRPC C++
# library. Tagged with the glibc this machine's libraries need
# (manylinux_2_35 on Debian 12). docs/python.md, "The wheel".
wheel: setup
	rm -rf dist/tmp && mkdir -p dist/tmp
	TENSORCAST_REQUIRE_NATIVE=1 $(VENV)/bin/pip wheel -q \
	  --disable-pip-version-check --no-deps --no-build-isolation \
	  -w dist/tmp ./client/python
	rm -f dist/tensorcast-*.whl
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/auditwheel repair \
	  -w dist dist/tmp/tensorcast-*.whl
	rm -rf dist/tmp

# The wheel installed in a Debian 12 container with python3 alone (no
# compiler, no gRPC C++ library, no network) and used against this build's
# server: scripts/test_wheel.sh. Needs root (podman).
test-wheel: build wheel
	BUILD_DIR=$(BUILD_DIR) PYTHON=$(PYTHON) ./scripts/test_wheel.sh

# AddressSanitizer + UndefinedBehaviorSanitizer over the same suites.
test-asan: setup
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTENSORCAST_SANITIZE=address,undefined -DTENSORCAST_BUILD_BENCH=OFF \
	  -DTENSORCAST_CUDA=OFF \
	  -DTENSORCAST_PYTHON=$(abspath $(PYTHON)) $(CMAKE_FLAGS)
	cmake --build $(ASAN_DIR) -j$(JOBS)
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS) --timeout 900 -LE large

# The Dockerfiles (hadolint), docker/compose.yaml (the Compose
# Specification's schema, a copy in docker/schema) and the scripts they run
# (shellcheck): what can be checked here, where no Docker engine runs.
lint-docker: setup
	./scripts/check_docker.sh

# deploy/kubernetes (scripts/check_deploy.sh, docs/cluster.md): each overlay
# rendered with `kubectl kustomize` where a kubectl with kustomize v5+ is on
# PATH, and scripts/kustomize_render.py must render the same objects; without
# one, with scripts/kustomize_render.py alone. Every object validated with
# kubernetes-validate --strict for
# Kubernetes 1.30-1.37 (offline), the checks schemas cannot make, and broken
# copies that must fail.
lint-deploy: setup
	./scripts/check_deploy.sh

# The CPU image for real (scripts/test_container.sh): built with podman from
# docker/Dockerfile.cpu as `docker build` would, run, and used from the host
# with this build's CLI and load tool; then docker/compose.yaml's cpu and
# load profiles. Needs root and a Debian mirror; installs podman, runc and
# debootstrap when missing and makes the Debian base image locally (no
# registry needed). Not part of make test (CI runs it as its own step):
# docker/README.md, "Without Docker".
test-container: build
	BUILD_DIR=$(BUILD_DIR) JOBS=$(JOBS) PYTHON=$(PYTHON) ./scripts/test_container.sh

# The CUDA image (docker/Dockerfile) as far as a machine without NVIDIA's
# images can take it (scripts/test_container_cuda.sh): built unchanged on a
# stand-in pair of bases made from the Debian base and this machine's CUDA
# toolkit (CUDA_HOME, default /usr/local/cuda), run as test-container runs
# the CPU image (on the CPU), and its nvcc flags, device code and CUDA
# runtime library checked. docker/README.md says what it cannot check.
test-container-cuda: build
	BUILD_DIR=$(BUILD_DIR) JOBS=$(JOBS) PYTHON=$(PYTHON) ./scripts/test_container_cuda.sh

# make test works from a plain clone: no tracked file may name the directory
# some checkouts have beside them (scripts/check_standalone.sh says which).
check-standalone:
	./scripts/check_standalone.sh

# libFuzzer (clang, ASan + UBSan): builds only the fuzzers, then runs each
# for FUZZ_SECONDS on a fresh copy of its seeds in tests/fuzz/corpus; fails
# if any finds a crash (tests/fuzz/README.md says what to do then).
FUZZ_TARGETS := npy put_header rpc shm http
fuzz: setup
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_COMPILER=clang++ -DTENSORCAST_FUZZ=ON \
	  -DTENSORCAST_BUILD_TESTS=OFF -DTENSORCAST_BUILD_BENCH=OFF \
	  -DTENSORCAST_CUDA=OFF
	cmake --build $(FUZZ_DIR) -j$(JOBS) \
	  --target $(addsuffix _fuzzer,$(FUZZ_TARGETS))
	./tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

bench: build
	./bench/run.sh $(BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h' '*.cu')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR) $(TSA_DIR)
