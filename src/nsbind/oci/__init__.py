"""The container layer: an OCI runtime spec (``config.json``) parsed and validated into
typed objects (:mod:`nsbind.oci.spec`), converted to spawn arguments
(:mod:`nsbind.oci.convert`) and run once (:mod:`nsbind.oci.run`) or through the OCI
lifecycle (:mod:`nsbind.oci.lifecycle`), on nsbind's public API only.  Names are
imported on first use: ``nsbind-oci state`` must not pay for the spec parser."""

from __future__ import annotations

# eager, and light (the state file and the standard library): ``state`` must be the
# function, not the submodule nsbind.oci.state that importing it binds here
from nsbind.lazyimport import module_getattr
from nsbind.oci.lifecycle import delete, kill, start, state

TYPE_CHECKING = False  # not typing's (see nsbind.lazyimport)
if TYPE_CHECKING:
    from nsbind.oci.cgpath import (
        CgroupsPath,
        expand_slice,
        parse_cgroups_path,
        systemd_cgroup_path,
    )
    from nsbind.oci.convert import SpawnArgs, to_spawn
    from nsbind.oci.createop import create
    from nsbind.oci.defaults import default_spec, default_spec_json
    from nsbind.oci.lifecycle import delete, kill, start, state
    from nsbind.oci.resconv import CgroupSettings
    from nsbind.oci.run import run_bundle, run_spawn_args
    from nsbind.oci.schema import UNSUPPORTED, SpecError
    from nsbind.oci.spec import Spec, load_spec, parse_spec
    from nsbind.oci.state import LifecycleError
    from nsbind.oci.validate import Host

_LAZY = {
    "CgroupsPath": "cgpath", "expand_slice": "cgpath", "parse_cgroups_path": "cgpath",
    "systemd_cgroup_path": "cgpath", "SpawnArgs": "convert", "to_spawn": "convert",
    "default_spec": "defaults", "default_spec_json": "defaults", "create": "createop",
    "CgroupSettings": "resconv", "run_bundle": "run", "run_spawn_args": "run",
    "UNSUPPORTED": "schema", "SpecError": "schema", "Spec": "spec", "load_spec": "spec",
    "parse_spec": "spec", "LifecycleError": "state", "Host": "validate",
}


__getattr__ = module_getattr("nsbind.oci", {k: f".{v}" for k, v in _LAZY.items()},
                             globals())


__all__ = ["UNSUPPORTED", "CgroupSettings", "CgroupsPath", "Host", "LifecycleError",
           "SpawnArgs", "Spec", "SpecError", "create", "default_spec", "default_spec_json",
           "delete", "expand_slice", "kill", "load_spec", "parse_cgroups_path", "parse_spec",
           "run_bundle", "run_spawn_args", "start", "state", "systemd_cgroup_path",
           "to_spawn"]
