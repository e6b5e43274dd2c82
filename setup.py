"""Build glue: setuptools compiles the cffi extension declared in _native/build.py."""

from setuptools import setup

setup(cffi_modules=["src/nsbind/_native/build.py:ffibuilder"])
