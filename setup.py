"""The compiled v2 Avro -> Arrow decoder (everything else is in pyproject.toml); optional: k2 falls back to the
pure-Python decoder when it cannot be built."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("k2cli._avro_arrow", ["k2cli/_avro_arrow.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c11"])])
