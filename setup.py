"""The one compiled part: fakesys/fuse/front.c, a plain shared library that
fakesys/fuse/front.py loads with ctypes (it uses no Python API).  Optional:
where it cannot be built, fakesys serves through pyfuse3 alone (slower)."""

import subprocess

from setuptools import Extension, setup


def _fuse3_cflags() -> list[str]:
    try:
        out = subprocess.run(["pkg-config", "--cflags-only-I", "fuse3"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ["/usr/include/fuse3"]
    return [flag[2:] for flag in out.split() if flag.startswith("-I")]


setup(ext_modules=[Extension(
    "fakesys.fuse._front", ["fakesys/fuse/front.c"],
    include_dirs=_fuse3_cflags(), libraries=["fuse3", "pthread"],
    extra_compile_args=["-O2", "-Wall", "-Wextra"], optional=True,
)])
