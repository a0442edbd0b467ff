"""The compiled parts: media/_dataplane.c and media/_assembly.c (everything else is in pyproject.toml)."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Werror"]

setup(ext_modules=[Extension("media._dataplane", ["media/_dataplane.c"], extra_compile_args=FLAGS),
                   Extension("media._assembly", ["media/_assembly.c"], extra_compile_args=FLAGS)])
