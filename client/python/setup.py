"""The optional native extension, tensorcast._native (everything else is in
pyproject.toml). It is built when pybind11 (a build requirement) and the
gRPC C++ library (pkg-config grpc++) are found and the repository's
proto/wire.h is beside this package; a build that fails leaves the
pure-grpcio client, which works the same, only slower. Set
TENSORCAST_NO_NATIVE=1 to skip it."""

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


def native_extensions() -> list[Extension]:
    if os.environ.get("TENSORCAST_NO_NATIVE"):
        return []
    cflags, libs = pkg_config("--cflags"), pkg_config("--libs")
    if cflags is None or libs is None or not os.path.exists(
            os.path.join(ROOT, "proto", "wire.h")):
        print("tensorcast: no gRPC C++ library or proto/wire.h here; "
              "building the pure-Python client only")
        return []
    try:
        import pybind11
    except ImportError:
        return []
    return [Extension(
        "tensorcast._native",
        sources=["tensorcast/_native.cc"],
        include_dirs=[pybind11.get_include(), ROOT],
        extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden", *cflags],
        extra_link_args=libs,
        language="c++",
        optional=True,  # a failed build leaves the pure-Python client
    )]


setup(ext_modules=native_extensions())
