"""Image references as Docker reads them (the grammar of distribution's ``reference``).

``busybox`` is ``docker.io/library/busybox:latest``; ``user/app`` is
``docker.io/user/app:latest``; a first component with a ``.`` or a ``:`` in it, or
``localhost``, is a registry host (``127.0.0.1:5000/repo:tag``); ``@sha256:...``
names a manifest by digest (the tag, if any, is then only a label).  Repository
components are lowercase; the whole name is at most 255 characters.
"""

from __future__ import annotations

from nsbind.charsets import ALNUM, DIGITS, HEX, LOWER, Word
from nsbind.frozen import frozen
from nsbind.image.model import ImageError, check_digest

__all__ = ["DOCKER_HUB", "Reference", "parse_reference", "tag_name"]

#: the registry a name without a host refers to, and where its API lives
DOCKER_HUB = "docker.io"
_HUB_API = "registry-1.docker.io"

_LOWER_ALNUM = frozenset(DIGITS + LOWER)
#: a host name's part: [a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
_DOMAIN_PART = Word(ALNUM, ALNUM + "-", last=ALNUM)
_IPV6 = frozenset(HEX + "ABCDEF:.")
_DIGITS = frozenset(DIGITS)
_TAG = Word(ALNUM + "_", ALNUM + "_.-", max_len=128)  # [\w][\w.-]{0,127}, ASCII


def _component_ok(part: str) -> bool:
    """A repository path component: ``[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*``."""
    if not part or part[0] not in _LOWER_ALNUM or part[-1] not in _LOWER_ALNUM:
        return False
    at = 0
    while at < len(part):
        if part[at] in _LOWER_ALNUM:
            at += 1
            continue
        end = at
        while part[end] not in _LOWER_ALNUM:  # the last character is one: this stops
            end += 1
        sep = part[at:end]
        if sep not in (".", "_", "__") and sep.strip("-"):
            return False
        at = end
    return True


def _host_ok(text: str) -> bool:
    """A registry host and port:
    ``(?:PART(?:\\.PART)*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?``."""
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket or not address or not _IPV6.issuperset(address):
            return False
    else:
        name, colon, port = text.partition(":")
        rest = colon + port
        if not all(_DOMAIN_PART.matches(part) for part in name.split(".")):
            return False
    return not rest or (rest[0] == ":" and len(rest) > 1
                        and _DIGITS.issuperset(rest[1:]))
_MAX_NAME = 255


@frozen
class Reference:
    """A parsed reference: ``registry`` (``docker.io`` or ``host[:port]``), ``repository``
    (``library/busybox``), and a ``tag`` or a ``digest`` (or both)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def target(self) -> str:
        """What the manifest is fetched by: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """The host (and port) the distribution API is served on."""
        return _HUB_API if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """As Docker prints it: ``busybox:latest`` for docker.io/library/busybox:latest."""
        text = str(self)
        if self.registry == DOCKER_HUB:
            text = text.removeprefix(DOCKER_HUB + "/").removeprefix("library/")
        return text


def parse_reference(text: str) -> Reference:
    """``text`` normalized the way Docker does; ImageError naming it when malformed."""
    if not isinstance(text, str) or not text:
        raise ImageError("an empty image reference")
    shown = repr(text[:300])
    rest, digest = text, None
    if "@" in rest:
        rest, _, digest_text = rest.partition("@")
        digest = check_digest(digest_text, f"reference {shown}: digest")
    tag = None
    head, slash, last = rest.rpartition("/")
    if ":" in last:
        last, _, tag = last.partition(":")
        if not _TAG.matches(tag):
            raise ImageError(f"reference {shown}: invalid tag {tag[:140]!r}")
        rest = f"{head}{slash}{last}"
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if not _host_ok(first):
            raise ImageError(f"reference {shown}: invalid registry host {first[:100]!r}")
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    for part in path.split("/"):
        if not _component_ok(part):
            why = "must be lowercase" if _component_ok(part.lower()) else "is invalid"
            raise ImageError(f"reference {shown}: repository name component {part[:100]!r} "
                             f"{why}")
    if len(f"{registry}/{path}") > _MAX_NAME:
        raise ImageError(f"reference {shown}: the name is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)


def tag_name(text: str) -> str:
    """The tag ``text`` is stored under (Docker's familiar spelling: ``busybox:latest``);
    ImageError when it is malformed or names a digest, which is not a tag."""
    ref = parse_reference(text)
    if ref.digest is not None:
        raise ImageError(f"{text[:300]!r}: a digest reference is not a tag")
    return ref.familiar()
