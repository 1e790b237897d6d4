"""The optional native extension, tensorcast._native (everything else is in
pyproject.toml). It is built when pybind11 (a build requirement) and the
gRPC C++ library (pkg-config grpc++) are found and the repository's
proto/wire.h is beside this package; a build that fails leaves the
pure-grpcio client, which works the same, only slower. Set
TENSORCAST_NO_NATIVE=1 to skip it, or TENSORCAST_REQUIRE_NATIVE=1 (as
`make test-python` does) to make the install fail, saying why, when the
extension cannot be built: a missing prerequisite, or the compiler's error
(no Python.h without python3-dev, for one)."""

import os
import shlex
import subprocess

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def pkg_config(flag: str) -> list[str] | None:
    try:
        out = subprocess.run(["pkg-config", flag, "grpc++"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return shlex.split(out)


REQUIRED = os.environ.get("TENSORCAST_REQUIRE_NATIVE") == "1"


def skip_native(reason: str) -> list[Extension]:
    if REQUIRED:
        raise SystemExit(f"tensorcast: TENSORCAST_REQUIRE_NATIVE=1, but "
                         f"the native extension cannot be built: {reason}")
    print(f"tensorcast: {reason}; building the pure-Python client only")
    return []


def native_extensions() -> list[Extension]:
    if os.environ.get("TENSORCAST_NO_NATIVE"):
        return skip_native("TENSORCAST_NO_NATIVE is set")
    cflags, libs = pkg_config("--cflags"), pkg_config("--libs")
    if cflags is None or libs is None:
        return skip_native("pkg-config finds no grpc++ (the gRPC C++ "
                           "library: libgrpc++-dev and pkg-config on Debian)")
    if not os.path.exists(os.path.join(ROOT, "proto", "wire.h")):
        return skip_native(f"no proto/wire.h in {ROOT} (the package is "
                           "built outside the tensorcast repository)")
    try:
        import pybind11
    except ImportError:
        return skip_native("pybind11 cannot be imported")
    return [Extension(
        "tensorcast._native",
        sources=["tensorcast/_native.cc"],
        # Rebuilt when either changes (pip builds in client/python/build,
        # which outlives an install).
        depends=[os.path.join(ROOT, "proto", "wire.h")],
        include_dirs=[pybind11.get_include(), ROOT],
        extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden", *cflags],
        extra_link_args=libs,
        language="c++",
        # A failed build leaves the pure-Python client, unless required.
        optional=not REQUIRED,
    )]


setup(ext_modules=native_extensions())
