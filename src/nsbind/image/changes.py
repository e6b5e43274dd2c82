"""Dockerfile instructions applied to an image's runtime config: ``--change`` of
``nsbind commit`` and ``nsbind image import``, as ``docker commit --change`` reads them.

Accepted: ``CMD``, ``ENTRYPOINT`` (a JSON array, or the shell form, which becomes
``/bin/sh -c TEXT``), ``ENV`` (``KEY=VALUE ...`` or ``KEY VALUE``), ``EXPOSE``
(``PORT[/PROTO]``, tcp when unsaid), ``LABEL KEY=VALUE ...``, ``USER``, ``WORKDIR``
(relative to the one before, as in a Dockerfile), ``VOLUME`` (a JSON array or paths)
and ``STOPSIGNAL``.  Anything else is an error naming the instruction; so is a value
with a NUL byte or a JSON form that is not a list of strings.
"""

from __future__ import annotations

import json
import posixpath
import shlex

from nsbind.frozen import replace_fields
from nsbind.image.model import ImageConfig, ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["INSTRUCTIONS", "apply_changes"]


def _words(text: str, what: str) -> list[str]:
    """The JSON array of strings ``text`` (ImageError naming ``what`` otherwise)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ImageError(f"{what}: {text!r} is not a JSON array of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{what}: {text!r} is not a JSON array of strings")
    return value


def _command(text: str, what: str) -> tuple[str, ...]:
    if text.startswith("["):
        return tuple(_words(text, what))
    return ("/bin/sh", "-c", text)


def _pairs(text: str, what: str, *, legacy: bool) -> list[tuple[str, str]]:
    """``K=V K2="V 2"`` (or, for ENV, the old ``KEY VALUE`` form)."""
    try:
        words = shlex.split(text, posix=True)
    except ValueError as exc:
        raise ImageError(f"{what}: {text!r}: {exc}") from None
    if legacy and words and "=" not in words[0]:
        key, _, value = text.partition(" ")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise ImageError(f"{what}: {word!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def _cmd(c: ImageConfig, text: str, what: str) -> ImageConfig:
    return replace_fields(c, cmd=_command(text, what))


def _entrypoint(c: ImageConfig, text: str, what: str) -> ImageConfig:
    # as in a Dockerfile, a new entrypoint drops an inherited CMD
    return replace_fields(c, entrypoint=_command(text, what), cmd=())


def _env(c: ImageConfig, text: str, what: str) -> ImageConfig:
    env = list(c.env)
    for key, value in _pairs(text, what, legacy=True):
        env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
    return replace_fields(c, env=tuple(env))


def _expose(c: ImageConfig, text: str, what: str) -> ImageConfig:
    ports = list(c.exposed_ports)
    for word in text.split():
        port, _, proto = word.partition("/")
        proto = proto.lower() or "tcp"
        if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("tcp", "udp",
                                                                             "sctp"):
            raise ImageError(f"{what}: {word!r} is not PORT[/tcp|udp|sctp]")
        if f"{int(port)}/{proto}" not in ports:
            ports.append(f"{int(port)}/{proto}")
    return replace_fields(c, exposed_ports=tuple(ports))


def _label(c: ImageConfig, text: str, what: str) -> ImageConfig:
    return replace_fields(c, labels={**c.labels, **dict(_pairs(text, what, legacy=False))})


def _user(c: ImageConfig, text: str, what: str) -> ImageConfig:
    return replace_fields(c, user=text)


def _workdir(c: ImageConfig, text: str, what: str) -> ImageConfig:
    return replace_fields(c, working_dir=posixpath.join(c.working_dir or "/", text))


def _volume(c: ImageConfig, text: str, what: str) -> ImageConfig:
    paths = _words(text, what) if text.startswith("[") else text.split()
    if not all(p.startswith("/") for p in paths):
        raise ImageError(f"{what}: volumes are absolute paths")
    return replace_fields(c, volumes=tuple(dict.fromkeys((*c.volumes, *paths))))


def _stopsignal(c: ImageConfig, text: str, what: str) -> ImageConfig:
    return replace_fields(c, stop_signal=text)


#: the instructions accepted, and what each does to the config
INSTRUCTIONS: dict[str, Callable[[ImageConfig, str, str], ImageConfig]] = {
    "CMD": _cmd, "ENTRYPOINT": _entrypoint, "ENV": _env, "EXPOSE": _expose,
    "LABEL": _label, "USER": _user, "WORKDIR": _workdir, "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
}


def apply_changes(config: ImageConfig, changes: Sequence[str]) -> ImageConfig:
    """``config`` with each Dockerfile instruction of ``changes`` applied in order;
    ImageError naming the change that is refused (see the module doc)."""
    for change in changes:
        what = f"change {change!r}"
        if "\0" in change:
            raise ImageError(f"{what}: a NUL byte")
        word, _, text = change.strip().partition(" ")
        apply = INSTRUCTIONS.get(word.upper())
        if apply is None:
            raise ImageError(f"{what}: {word or 'an empty change'} is not one of "
                             f"{', '.join(INSTRUCTIONS)}")
        text = text.strip()
        if not text:
            raise ImageError(f"{what}: {word.upper()} needs a value")
        config = apply(config, text, what)
    return config
