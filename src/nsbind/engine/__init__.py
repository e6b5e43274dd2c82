"""The container engine behind the ``nsbind`` command: a docker-like request (an image
and ``nsbind run``'s flags) turned into an OCI spec (:mod:`nsbind.engine.specgen`) and
run through the container layer's lifecycle (:mod:`nsbind.oci`), with a record per
container and, for a detached one, a monitor process that holds its logs and exit
status.  Each command imports only the modules it uses."""

from __future__ import annotations

__all__: list[str] = []
