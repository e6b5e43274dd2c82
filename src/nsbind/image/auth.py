"""Registry credentials in Docker's ``config.json`` (``auths.<host>.auth``: base64 of
``user:password``), the file podman and skopeo read too.

Where: ``$REGISTRY_AUTH_FILE`` if set, else ``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``.  Docker Hub's entry is keyed
``https://index.docker.io/v1/``; other registries by ``host[:port]`` (``https://``
prefixed keys are read too).  The file is written atomically, mode 0600, every other
key in it kept.  Credential helpers (``credHelpers``, ``credsStore``) are not run.
Credentials never appear in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from typing import Any

from nsbind.ctxlite import suppress
from nsbind.image.model import ImageError, parse_json

__all__ = ["auth_file", "credentials", "forget_credentials", "store_credentials"]

_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")


def auth_file() -> str:
    """The credentials file this process reads and writes."""
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return os.environ["REGISTRY_AUTH_FILE"]
    if os.environ.get("DOCKER_CONFIG"):
        return os.path.join(os.environ["DOCKER_CONFIG"], "config.json")
    return os.path.join(os.path.expanduser("~"), ".docker", "config.json")


def _keys(registry: str) -> list[str]:
    if registry in _HUB_NAMES:
        return [_HUB_KEY, *_HUB_NAMES]
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/",
            f"https://{registry}/v2/"]


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read((1 << 20) + 1)
    except FileNotFoundError:
        return {}
    if len(data) > 1 << 20:
        raise ImageError(f"{path}: larger than 1 MiB")
    if not data.strip():
        return {}
    doc = parse_json(data, path)
    if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
        raise ImageError(f"{path}: not a credentials file (no 'auths' object)")
    return doc


def credentials(registry: str, path: str | None = None) -> tuple[str, str] | None:
    """(user, password) stored for ``registry`` (``host[:port]`` or ``docker.io``), or None."""
    path = path or auth_file()
    auths = _read(path).get("auths", {})
    for key in _keys(registry):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                user, sep, password = base64.b64decode(encoded, validate=True).decode(
                    "utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ImageError(f"{path}: the entry for {registry} is not base64 of "
                                 "user:password") from None
            if not sep:
                raise ImageError(f"{path}: the entry for {registry} is not user:password")
            return user, password
        name, secret = entry.get("username"), entry.get("password")
        if isinstance(name, str) and isinstance(secret, str):
            return name, secret
    return None


def _write(path: str, doc: dict[str, Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".config.", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp's mode: 0600
            json.dump(doc, f, indent="\t")
            f.write("\n")
        os.rename(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def store_credentials(registry: str, user: str, password: str,
                      path: str | None = None) -> str:
    """Save (user, password) for ``registry``; return the file written."""
    if ":" in user:
        raise ImageError("a user name cannot contain ':'")
    path = path or auth_file()
    doc = _read(path)
    auths = doc.setdefault("auths", {})
    for key in _keys(registry)[1:]:
        auths.pop(key, None)
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    auths[_keys(registry)[0]] = {"auth": token}
    _write(path, doc)
    return path


def forget_credentials(registry: str, path: str | None = None) -> bool:
    """Remove what is saved for ``registry``; False when there was nothing."""
    path = path or auth_file()
    doc = _read(path)
    auths = doc.get("auths", {})
    gone = [key for key in _keys(registry) if auths.pop(key, None) is not None]
    if gone:
        _write(path, doc)
    return bool(gone)
