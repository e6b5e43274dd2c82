"""``nsbind pull``, ``push``, ``login``, ``logout``: argument parsing over
:mod:`nsbind.image.pulling`, :mod:`nsbind.image.pushing` and :mod:`nsbind.image.auth`.

Errors are one line on stderr (never a traceback, never a credential): status 1
when the registry or the image failed, 125 when the arguments are wrong (as Docker
answers a bad flag).  The store is the main parser's ``--root`` (default: the
default store).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nsbind.errors import InvalidValue

__all__ = ["add_parsers", "run"]

COMMANDS = ("pull", "push", "login", "logout")


class _UsageError(InvalidValue):
    """Arguments that make no sense: status 125."""


def _bool(text: str) -> bool:
    value = text.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _registry_flags(p: argparse.ArgumentParser, *, creds: bool = True) -> None:
    p.add_argument("--tls-verify", type=_bool, nargs="?", const=True, default=True,
                   metavar="BOOL", help="check the registry's TLS certificate (default "
                   "true); false also allows a plain-HTTP registry")
    p.add_argument("--cert-dir", metavar="DIR", help="per-registry CA certificates, in "
                   "DIR/HOST:PORT/*.crt (default /etc/containers/certs.d)")
    if creds:
        p.add_argument("--creds", metavar="USER:PASSWORD",
                       help="credentials for this command (default: those of nsbind login)")


def add_parsers(sub: Any) -> None:
    """Add ``pull``, ``push``, ``login`` and ``logout`` to an argparse subparsers object."""
    p = sub.add_parser("pull", help="download an image from a registry into the store")
    p.add_argument("ref", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--platform", help="os/arch[/variant] in a multi-platform image "
                   "(default: this host)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    _registry_flags(p)
    p = sub.add_parser("push", help="upload a stored image to a registry")
    p.add_argument("image", metavar="IMAGE", help="a tag or config digest in the store")
    p.add_argument("ref", metavar="NAME[:TAG]", nargs="?",
                   help="where to push it (default: IMAGE's name)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    _registry_flags(p)
    p = sub.add_parser("login", help="save credentials for a registry")
    p.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input")
    _registry_flags(p, creds=False)
    p = sub.add_parser("logout", help="forget the credentials saved for a registry")
    p.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")


def _creds(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise _UsageError("--creds: expected USER:PASSWORD")
    return user, password


def _platform(text: str | None) -> tuple[str, str] | None:
    from nsbind.image.cli import parse_platform
    from nsbind.image.model import ImageError

    try:
        return parse_platform(text)
    except ImageError as exc:
        raise _UsageError(str(exc)) from None


def _server(text: str) -> str:
    """``https://host:port/v2/`` or ``host:port`` -> ``host:port``."""
    host = text.split("://", 1)[-1].split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    if not host or any(c.isspace() or c == "@" for c in host):
        raise _UsageError(f"{text[:100]!r} is not a registry host")
    return host


def run(args: argparse.Namespace) -> int:
    """Run the command ``args.command`` names; the exit status."""
    command = getattr(args, "command", None) or _guess(args)
    try:
        return _run(command, args)
    except _UsageError as exc:
        print(f"nsbind {command}: {exc}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        print(f"nsbind {command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # ImageError and RegistryError are ValueErrors
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"nsbind {command}: {text}", file=sys.stderr)
        return 1


def _guess(args: argparse.Namespace) -> str:
    if hasattr(args, "image"):
        return "push"
    if hasattr(args, "platform"):
        return "pull"
    return "login" if hasattr(args, "username") else "logout"


def _run(command: str, args: argparse.Namespace) -> int:
    store = getattr(args, "root", None)
    if command == "pull":
        from nsbind.image.pulling import pull
        from nsbind.image.reference import parse_reference

        ref = parse_reference(args.ref)
        if not args.quiet:
            print(f"{ref.target}: Pulling from {ref.familiar().split(':')[0].split('@')[0]}",
                  flush=True)
        done = pull(ref, store=store, platform=_platform(args.platform),
                    tls_verify=args.tls_verify, creds=_creds(args.creds),
                    cert_dir=args.cert_dir, progress=None if args.quiet else sys.stderr)
        if not args.quiet:
            print(f"Digest: {done.digest}")
            state = "Downloaded newer image" if done.fetched else "Image is up to date"
            print(f"Status: {state} for {ref.familiar()}")
        print(str(ref))
        return 0
    if command == "push":
        from nsbind.image.pushing import push

        def told(digest: str, what: str) -> None:
            if not args.quiet:
                print(f"{digest[7:19]}: {'Layer already exists' if what == 'exists' else what}",
                      flush=True)

        digest = push(args.image, args.ref, store=store, tls_verify=args.tls_verify,
                      creds=_creds(args.creds), cert_dir=args.cert_dir, on_blob=told)
        print(digest if args.quiet else f"digest: {digest}")
        return 0
    from nsbind.image.auth import forget_credentials, store_credentials

    server = _server(args.server)
    if command == "logout":
        if not forget_credentials(server):
            print(f"Not logged in to {server}")
            return 0
        print(f"Removing login credentials for {server}")
        return 0
    user, password = args.username, args.password
    if args.password_stdin:
        if password is not None:
            raise _UsageError("--password and --password-stdin are exclusive")
        password = sys.stdin.readline().rstrip("\r\n")
    if not user or password is None:
        if not sys.stdin.isatty():
            raise _UsageError("a user name (-u) and a password (-p or --password-stdin) "
                              "are needed")
        import getpass

        user = user or input("Username: ")
        password = getpass.getpass("Password: ") if password is None else password
    _check_login(server, (user, password), args.tls_verify, args.cert_dir)
    path = store_credentials(server, user, password)
    print(f"Login Succeeded (saved in {path})")
    return 0


def _check_login(server: str, creds: tuple[str, str], tls_verify: bool,
                 cert_dir: str | None) -> None:
    """RegistryError unless the registry accepts ``creds`` (as ``docker login`` checks)."""
    from nsbind.image.reference import DOCKER_HUB
    from nsbind.image.registry import Registry, RegistryError

    host = "registry-1.docker.io" if server == DOCKER_HUB else server
    with Registry(host, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir) as reg:
        resp = reg.request("GET", "/v2/", scope=(), what=f"login {server}")
        status = resp.status
        resp.drain_conn()
        resp.release_conn()
    if status != 200:
        raise RegistryError(f"login {server}: the registry answered {status}", status)
