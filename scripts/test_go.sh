#!/usr/bin/env bash
# make test-go: the Go client (client/go, docs/go.md), built and tested
# offline against Debian's Go packages (scripts/setup.sh installs them):
#   1. gofmt -l client/go must print nothing;
#   2. the stubs are generated from proto/ into $BUILD_DIR/go/gen with
#      Debian's protoc-gen-go and protoc-gen-go-grpc (never committed);
#   3. go vet, the example program built, and go test against the real
#      server ($BUILD_DIR/bin/tensorcast-server) with the venv's NumPy.
# Go runs in GOPATH mode (GO111MODULE=off) over $BUILD_DIR/go/path (which
# links the import path "tensorcast" to client/go), the generated stubs and
# /usr/share/gocode, where Debian's golang-*-dev packages put their source:
# nothing is downloaded. Arguments go to `go test` (e.g. -run TestFetch -v).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
PYTHON=${PYTHON:-.venv/bin/python}
GOCODE=${GOCODE:-/usr/share/gocode}

for tool in go gofmt protoc protoc-gen-go protoc-gen-go-grpc; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-go: $tool not found: the Go client needs Debian's golang-go," \
      "golang-google-grpc-dev, golang-google-protobuf-dev," \
      "golang-github-golang-protobuf-1-5-dev, protoc-gen-go and" \
      "protoc-gen-go-grpc (make setup installs them)" >&2
    exit 1
  fi
done
if [ ! -d "$GOCODE/src/google.golang.org/grpc" ] ||
  [ ! -d "$GOCODE/src/google.golang.org/protobuf" ]; then
  echo "test-go: no Go gRPC or protobuf source under $GOCODE (install" \
    "golang-google-grpc-dev and golang-google-protobuf-dev: make setup)" >&2
  exit 1
fi

unformatted=$(gofmt -l client/go)
if [ -n "$unformatted" ]; then
  echo "test-go: gofmt would change these files (run gofmt -w client/go):" >&2
  echo "$unformatted" >&2
  exit 1
fi

root=$(pwd)
build=$(mkdir -p "$BUILD_DIR" && cd "$BUILD_DIR" && pwd)
case $PYTHON in /*) ;; *) PYTHON=$root/$PYTHON ;; esac
go_dir=$build/go
# The stubs, fresh each time: the proto is the one source of truth.
rm -rf "$go_dir/gen"
mkdir -p "$go_dir/gen/src" "$go_dir/path/src"
map=Mtensorcast/v1/tensor_service.proto=tensorcast/v1pb
protoc -I proto --go_out="$go_dir/gen/src" --go_opt="$map" \
  --go-grpc_out="$go_dir/gen/src" --go-grpc_opt="$map" \
  tensorcast/v1/tensor_service.proto
ln -sfn "$root/client/go" "$go_dir/path/src/tensorcast"

export GO111MODULE=off GOFLAGS='' GOPROXY=off GOTOOLCHAIN=local
export GOPATH="$go_dir/path:$go_dir/gen:$GOCODE"
export GOCACHE="$go_dir/cache"
# `go ... tensorcast/...` skips symlinked directories, so the packages are
# named one by one.
packages=(tensorcast tensorcast/npy tensorcast/internal/testserver
  tensorcast/cmd/example)
go version
go vet "${packages[@]}"
go build -o "$go_dir/bin/tensorcast-example" tensorcast/cmd/example

export TENSORCAST_SERVER_BIN=${TENSORCAST_SERVER_BIN:-$build/bin/tensorcast-server}
export TENSORCAST_PYTHON=${TENSORCAST_PYTHON:-$PYTHON}
go test -count=1 -timeout 600s "$@" "${packages[@]}"
