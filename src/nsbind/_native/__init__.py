"""The compiled core: ``ffi`` and ``lib`` of the cffi extension, nothing else."""

from nsbind._native._nsbind import ffi, lib

__all__ = ["ffi", "lib"]
