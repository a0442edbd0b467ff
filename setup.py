"""The compiled parts: media._dataplane (_dataplane.c, _ingress.c) and media._assembly (the rest: pyproject.toml)."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Werror"]

HEADERS = ["media/_dataplane.h", "media/_codec_rules.h"]

setup(ext_modules=[Extension("media._dataplane", ["media/_dataplane.c", "media/_ingress.c"], depends=HEADERS,
                             extra_compile_args=FLAGS),
                   Extension("media._assembly", ["media/_assembly.c"], depends=HEADERS, extra_compile_args=FLAGS)])
