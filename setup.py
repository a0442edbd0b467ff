"""The one compiled part: media/_dataplane.c (everything else is in pyproject.toml)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("media._dataplane", ["media/_dataplane.c"],
                             extra_compile_args=["-O2", "-Wall", "-Werror"])])
