"""The container layer: an OCI runtime spec (``config.json``) parsed and validated into
typed objects (:mod:`nsbind.oci.spec`), on nsbind's public API only."""

from __future__ import annotations

from nsbind.oci.cgpath import CgroupsPath, expand_slice, parse_cgroups_path, systemd_cgroup_path
from nsbind.oci.defaults import default_spec, default_spec_json
from nsbind.oci.schema import UNSUPPORTED, SpecError
from nsbind.oci.spec import Spec, load_spec, parse_spec
from nsbind.oci.validate import Host

__all__ = ["UNSUPPORTED", "CgroupsPath", "Host", "Spec", "SpecError", "default_spec",
           "default_spec_json", "expand_slice", "load_spec", "parse_cgroups_path",
           "parse_spec", "systemd_cgroup_path"]
