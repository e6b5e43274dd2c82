"""The container layer: an OCI runtime spec (``config.json``) parsed and validated into
typed objects (:mod:`nsbind.oci.spec`), converted to spawn arguments
(:mod:`nsbind.oci.convert`) and run once (:mod:`nsbind.oci.run`) or through the OCI
lifecycle (:mod:`nsbind.oci.lifecycle`), on nsbind's public API only."""

from __future__ import annotations

from nsbind.oci.cgpath import CgroupsPath, expand_slice, parse_cgroups_path, systemd_cgroup_path
from nsbind.oci.convert import SpawnArgs, to_spawn
from nsbind.oci.defaults import default_spec, default_spec_json
from nsbind.oci.lifecycle import create, delete, kill, start, state
from nsbind.oci.resconv import CgroupSettings
from nsbind.oci.run import run_bundle, run_spawn_args
from nsbind.oci.schema import UNSUPPORTED, SpecError
from nsbind.oci.spec import Spec, load_spec, parse_spec
from nsbind.oci.state import LifecycleError
from nsbind.oci.validate import Host

__all__ = ["UNSUPPORTED", "CgroupSettings", "CgroupsPath", "Host", "LifecycleError",
           "SpawnArgs", "Spec", "SpecError", "create", "default_spec", "default_spec_json",
           "delete", "expand_slice", "kill", "load_spec", "parse_cgroups_path", "parse_spec",
           "run_bundle", "run_spawn_args", "start", "state", "systemd_cgroup_path",
           "to_spawn"]
