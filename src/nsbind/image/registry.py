"""A client of one registry over the OCI distribution API (urllib3 underneath).

Everything the registry sends is hostile: manifests and tokens are read up to a cap
(:data:`MAX_MANIFEST_BYTES`, :data:`MAX_TOKEN_BYTES`), a blob never past the size its
descriptor states, error bodies up to 64 KiB; redirects are followed only to http(s)
URLs (5 at most), and the ``Authorization`` header is dropped when one leaves the host.
Credentials go into that header only: never into a URL, a log line or a message.

Auth: a 401 names the scheme in ``WWW-Authenticate``; ``Bearer`` fetches a token from
the realm (anonymously, or with the basic credentials when there are some), one per
scope; ``Basic`` sends the credentials.  TLS is checked against the system CAs plus
the ``*.crt`` files of ``<cert_dir>/<host[:port]>/`` (``/etc/containers/certs.d`` as
podman reads it; a ``*.cert``/``*.key`` pair there is the client certificate).
``tls_verify=False`` skips the check, and plain HTTP is used when the registry does
not speak TLS at all (the ``--tls-verify=false`` of podman and skopeo).

Connection errors, 429 and 5xx answers are retried with exponential backoff
(``Retry-After`` honoured up to 10 s); a blob download cut in the middle goes on
from where it stopped with a ``Range`` request, or starts over (the bytes already
read skipped) when the registry ignores ranges.
"""

from __future__ import annotations

import glob
import hashlib
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from nsbind.ctxlite import suppress
from nsbind.image.model import ImageError, kind_of, parse_json

if TYPE_CHECKING:
    import urllib3

__all__ = ["DEFAULT_CERT_DIR", "MANIFEST_TYPES", "MAX_MANIFEST_BYTES", "MAX_TOKEN_BYTES",
           "BlobReader", "Registry", "RegistryError"]

DEFAULT_CERT_DIR = "/etc/containers/certs.d"
#: the largest manifest or index read (containers/image takes 4 MiB)
MAX_MANIFEST_BYTES = 4 << 20
#: the largest token response read
MAX_TOKEN_BYTES = 1 << 20
_MAX_ERROR_BODY = 64 << 10
_MAX_REDIRECTS = 5
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_CHUNK = 1 << 20
#: what a manifest GET accepts, best first
MANIFEST_TYPES = ("application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")


class RegistryError(ImageError):
    """A registry refused a request, could not be reached, or sent something wrong;
    ``status`` is the HTTP status when there was an answer (404: no such image)."""

    operation = "registry"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _shown(text: str, limit: int = 200) -> str:
    """A registry's text for a message: cut, control characters escaped."""
    text = text[:limit]
    return text if text.isprintable() else "".join(
        c if c.isprintable() else repr(c)[1:-1] for c in text)


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {realm, service, ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1
            params[key] = "".join(value)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params


def _http_url(url: str, what: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RegistryError(f"{what}: {_shown(url)!r} is not an http(s) URL: refused")
    if parsed.username is not None or parsed.password is not None:
        raise RegistryError(f"{what}: a URL with credentials in it: refused")
    return url


class Registry:
    """The distribution API of the registry at ``host`` (``host[:port]``).

    ``creds`` (user, password) are used where the registry asks for them; ``retries``
    is how often a failed request is tried again, ``backoff`` the first wait (doubled
    each time).  Safe to share between threads.  Close it (or use ``with``)."""

    def __init__(self, host: str, *, tls_verify: bool = True,
                 creds: tuple[str, str] | None = None, cert_dir: str | None = None,
                 retries: int = 5, backoff: float = 0.5, timeout: float = 60.0) -> None:
        import urllib3

        self.host = host
        self.tls_verify = tls_verify
        self.retries = retries
        self.backoff = backoff
        self._creds = creds
        self._timeout = urllib3.Timeout(connect=min(timeout, 30.0), read=timeout)
        tls: dict[str, Any] = {"ssl_context": self._ssl_context(cert_dir)}
        if not tls_verify:  # asked for: no warning on every request
            tls.update(cert_reqs="CERT_NONE")
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._pool = urllib3.PoolManager(maxsize=8, **tls)
        self._base: str | None = None
        self._auth: dict[tuple[str, ...], str] = {}
        self._lock = threading.Lock()

    def _ssl_context(self, cert_dir: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        folder = os.path.join(cert_dir or DEFAULT_CERT_DIR, self.host)
        if os.path.isdir(folder):
            for ca in sorted(glob.glob(os.path.join(glob.escape(folder), "*.crt"))):
                ctx.load_verify_locations(cafile=ca)
            for cert in sorted(glob.glob(os.path.join(glob.escape(folder), "*.cert"))):
                key = cert[:-len(".cert")] + ".key"
                if os.path.exists(key):
                    ctx.load_cert_chain(cert, key)
        if not self.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def close(self) -> None:
        """Close every connection (PoolManager.clear alone leaves them to the GC)."""
        pools = self._pool.pools
        for key in list(pools.keys()):
            with suppress(KeyError):
                pools[key].close()
        self._pool.clear()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- transport

    def base(self) -> str:
        """``https://host`` (or ``http://host`` for a plain-HTTP registry when TLS is not
        verified), found by pinging ``/v2/`` once."""
        if self._base is None:
            https = f"https://{self.host}"
            if self.tls_verify:
                self._base = https
            else:
                import urllib3

                try:
                    resp = self._pool.request("GET", f"{https}/v2/", redirect=False,
                                              retries=False, timeout=self._timeout,
                                              preload_content=False)
                    resp.drain_conn()
                    resp.release_conn()
                    self._base = https
                except (urllib3.exceptions.SSLError, urllib3.exceptions.ProtocolError):
                    self._base = f"http://{self.host}"
                except urllib3.exceptions.HTTPError:
                    self._base = https  # unreachable: the retries below say so
        return self._base

    def sleep(self, attempt: int, retry_after: str | None = None) -> None:
        wait = self.backoff * (2 ** attempt)
        if retry_after is not None:
            with suppress(ValueError):
                wait = float(retry_after)
        time.sleep(min(max(wait, 0.0), 10.0))

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | IO[bytes] | None, what: str) -> urllib3.BaseHTTPResponse:
        """One request, retried on connection errors, 429 and 5xx; redirects followed."""
        import urllib3

        for attempt in range(self.retries + 1):
            if body is not None and not isinstance(body, bytes):
                body.seek(0)
            try:
                resp = self._redirected(method, url, headers, body, what)
            except urllib3.exceptions.SSLError as exc:
                raise RegistryError(f"{what}: TLS: {_shown(str(exc.__context__ or exc))}"
                                    ) from None
            except urllib3.exceptions.HTTPError as exc:
                if attempt >= self.retries:
                    raise RegistryError(f"{what}: {_shown(str(exc))}") from None
                self.sleep(attempt)
                continue
            if resp.status in _RETRY_STATUS and attempt < self.retries:
                retry_after = resp.headers.get("Retry-After")
                _discard(resp)
                self.sleep(attempt, retry_after)
                continue
            return resp
        raise AssertionError("unreachable")

    def _redirected(self, method: str, url: str, headers: dict[str, str],
                    body: bytes | IO[bytes] | None, what: str) -> urllib3.BaseHTTPResponse:
        host = urllib.parse.urlsplit(url).netloc
        for _ in range(_MAX_REDIRECTS + 1):
            if body is not None and not isinstance(body, bytes):
                body.seek(0)
            resp = self._pool.request(method, url, body=body, headers=headers, redirect=False,
                                      retries=False, preload_content=False,
                                      decode_content=False, timeout=self._timeout)
            location = resp.headers.get("Location")
            if resp.status not in (301, 302, 303, 307, 308) or not location:
                return resp
            _discard(resp)
            url = _http_url(urllib.parse.urljoin(url, location), f"{what}: redirect")
            if urllib.parse.urlsplit(url).netloc != host:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status == 303:
                method, body = "GET", None
        raise RegistryError(f"{what}: more than {_MAX_REDIRECTS} redirects")

    def request(self, method: str, path: str, *, scope: tuple[str, ...],
                headers: Mapping[str, str] | None = None,
                body: bytes | IO[bytes] | None = None,
                what: str = "") -> urllib3.BaseHTTPResponse:
        """``method`` on ``path`` (under the registry's base URL, or a full URL on it),
        authenticated for ``scope`` (``repository:NAME:pull`` ...) when the registry
        asks; the response unread (callers read it, capped, and release it)."""
        url = path if "://" in path else self.base() + path
        what = what or f"{method} {self.host}"
        send = {"User-Agent": "nsbind", "Accept-Encoding": "identity", **(headers or {})}
        for attempt in range(2):
            with self._lock:
                token = self._auth.get(scope)
            if token is not None:
                send["Authorization"] = token
            resp = self._send(method, url, send, body, what)
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            _discard(resp)
            if attempt or (token is not None and not challenge.lower().startswith("bearer")):
                break  # refused with fresh credentials: no use sending them again
            self._authenticate(challenge, scope, what)
        raise RegistryError(f"{what}: unauthorized (log in with nsbind login {self.host})",
                            401)

    def _authenticate(self, challenge: str, scope: tuple[str, ...], what: str) -> None:
        import base64

        scheme, params = _parse_challenge(challenge)
        basic = None
        if self._creds is not None:
            raw = f"{self._creds[0]}:{self._creds[1]}".encode()
            basic = "Basic " + base64.b64encode(raw).decode("ascii")
        if scheme == "basic":
            if basic is None:
                raise RegistryError(f"{what}: the registry wants a user name and password "
                                    f"(nsbind login {self.host})", 401)
            value = basic
        elif scheme == "bearer":
            value = "Bearer " + self._token(params, scope, basic, what)
        else:
            raise RegistryError(f"{what}: unauthorized, and the registry names no auth "
                                f"scheme nsbind knows ({_shown(scheme, 40)!r})", 401)
        with self._lock:
            self._auth[scope] = value

    def _token(self, params: dict[str, str], scope: tuple[str, ...], basic: str | None,
               what: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"{what}: a Bearer challenge without a realm")
        realm = _http_url(realm, f"{what}: token realm")
        query = [("scope", s) for s in scope]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        sep = "&" if urllib.parse.urlsplit(realm).query else "?"
        url = realm + sep + urllib.parse.urlencode(query)
        headers = {"User-Agent": "nsbind", "Accept-Encoding": "identity"}
        if basic is not None:
            headers["Authorization"] = basic
        resp = self._send("GET", url, headers, None, f"{what}: token")
        try:
            if resp.status != 200:
                raise RegistryError(f"{what}: the token server answered {resp.status}"
                                    + _error_text(resp), resp.status)
            data = read_capped(resp, MAX_TOKEN_BYTES, f"{what}: token response")
        finally:
            _discard(resp)
        doc = parse_json(data, f"{what}: token response")
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token or not token.isascii() or any(
                c in token for c in "\r\n\0 "):
            raise RegistryError(f"{what}: the token response holds no usable token "
                                f"({kind_of(token)})")
        return token

    # ---------------------------------------------------------------- API

    def manifest(self, repo: str, target: str, *, push: bool = False
                 ) -> tuple[bytes, str | None, str]:
        """(manifest bytes, Content-Type, their sha256 digest) of ``repo:target``
        (``target`` a tag or a digest, which the bytes are checked against)."""
        what = f"manifest {self.host}/{repo}:{target}"
        if target.startswith("sha256:"):
            what = f"manifest {self.host}/{repo}@{target}"
        resp = self.request("GET", f"/v2/{repo}/manifests/{target}",
                            scope=(f"repository:{repo}:{'pull,push' if push else 'pull'}",),
                            headers={"Accept": ", ".join(MANIFEST_TYPES)}, what=what)
        try:
            if resp.status != 200:
                raise _status_error(resp, what)
            data = read_capped(resp, MAX_MANIFEST_BYTES, what)
            media = resp.headers.get("Content-Type")
        finally:
            _discard(resp)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if target.startswith("sha256:") and digest != target:
            raise RegistryError(f"{what}: digest mismatch: got {digest}")
        return data, media, digest

    def blob(self, repo: str, digest: str, size: int, cap: int) -> bytes:
        """A small blob (a config), whole, checked against ``digest`` and ``size``."""
        what = f"blob {self.host}/{repo}@{digest}"
        if size > cap:
            raise RegistryError(f"{what}: {size} bytes, more than the {cap} allowed")
        with BlobReader(self, repo, digest, size) as reader:
            data = reader.read_all()
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise RegistryError(f"{what}: digest mismatch: got {got}")
        return data

    def open_blob(self, repo: str, digest: str, size: int,
                  abort: threading.Event | None = None) -> BlobReader:
        """A blob as a stream of at most ``size`` bytes, resumed when cut (the caller
        checks the digest: the store does, while it unpacks)."""
        return BlobReader(self, repo, digest, size, abort)

    def has_blob(self, repo: str, digest: str) -> bool:
        what = f"blob {self.host}/{repo}@{digest}"
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}",
                            scope=(f"repository:{repo}:pull,push",), what=what)
        _discard(resp)
        if resp.status in (200, 307):
            return True
        if resp.status == 404:
            return False
        raise RegistryError(f"{what}: HEAD answered {resp.status}", resp.status)

    def mount_blob(self, repo: str, digest: str, source_repo: str) -> bool:
        """Ask the registry to link ``digest`` from ``source_repo`` into ``repo`` (no
        upload); False when it would not (the upload it opened instead is left to expire)."""
        what = f"mount {self.host}/{source_repo}@{digest} into {repo}"
        query = urllib.parse.urlencode({"mount": digest, "from": source_repo})
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?{query}",
                            scope=(f"repository:{repo}:pull,push",
                                   f"repository:{source_repo}:pull"),
                            headers={"Content-Length": "0"}, body=b"", what=what)
        _discard(resp)
        return resp.status == 201

    def upload_blob(self, repo: str, digest: str, size: int, data: IO[bytes]) -> None:
        """Upload ``size`` bytes of ``data`` (seekable) as blob ``digest``, in one PUT."""
        what = f"upload {self.host}/{repo}@{digest}"
        scope = (f"repository:{repo}:pull,push",)
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope,
                            headers={"Content-Length": "0"}, body=b"", what=what)
        try:
            if resp.status != 202 or not resp.headers.get("Location"):
                raise _status_error(resp, what)
            location = resp.headers["Location"]
        finally:
            _discard(resp)
        url = _http_url(urllib.parse.urljoin(self.base() + "/", location), what)
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        url += sep + urllib.parse.urlencode({"digest": digest})
        resp = self.request("PUT", url, scope=scope, body=data, what=what,
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Length": str(size)})
        try:
            if resp.status != 201:
                raise _status_error(resp, what)
        finally:
            _discard(resp)

    def put_manifest(self, repo: str, target: str, data: bytes, media_type: str) -> None:
        what = f"manifest {self.host}/{repo}:{target}"
        resp = self.request("PUT", f"/v2/{repo}/manifests/{target}",
                            scope=(f"repository:{repo}:pull,push",),
                            headers={"Content-Type": media_type}, body=data, what=what)
        try:
            if resp.status not in (200, 201):
                raise _status_error(resp, what)
        finally:
            _discard(resp)


class BlobReader:
    """``read(n)`` over a blob download: at most ``size`` bytes in all; a connection
    cut (or a stream ending early) is resumed with ``Range`` or restarted, up to the
    registry's ``retries``.  Set ``abort`` to make the next read fail (another layer
    of the same pull failed)."""

    def __init__(self, registry: Registry, repo: str, digest: str, size: int,
                 abort: threading.Event | None = None) -> None:
        self._registry = registry
        self._repo = repo
        self._digest = digest
        self.size = size
        self.offset = 0
        self.resumed = 0
        self._abort = abort
        self._what = f"blob {registry.host}/{repo}@{digest}"
        self._resp: Any = None

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        resp = self._registry.request("GET", f"/v2/{self._repo}/blobs/{self._digest}",
                                      scope=(f"repository:{self._repo}:pull",),
                                      headers=headers, what=self._what)
        skip = 0
        if resp.status == 206 and self.offset:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(self.offset):
                _discard(resp)
                raise RegistryError(f"{self._what}: asked for bytes from {self.offset}, got "
                                    f"{_shown(resp.headers.get('Content-Range', ''), 60)!r}")
        elif resp.status == 200:
            skip = self.offset  # the registry starts over: pass what was read already
        else:
            err = _status_error(resp, self._what)
            _discard(resp)
            raise err
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.size - self.offset + skip:
            _discard(resp)
            raise RegistryError(f"{self._what}: the registry sends {length} bytes, the "
                                f"descriptor says {self.size}: refused")
        self._resp = resp
        while skip:
            got = resp.read(min(skip, _CHUNK), decode_content=False)
            if not got:
                raise RegistryError(f"{self._what}: the restarted download ended early")
            skip -= len(got)

    def read(self, n: int = -1, /) -> bytes:
        import urllib3

        if n < 0:
            n = _CHUNK
        left = self.size - self.offset
        failures = 0
        while True:
            if self._abort is not None and self._abort.is_set():
                raise RegistryError(f"{self._what}: stopped (another download failed)")
            try:
                if self._resp is None:
                    if left == 0 and self.offset:
                        return b""
                    self._open()
                data: bytes = self._resp.read(min(n, left + 1) if left else 1,
                                              decode_content=False)
            except urllib3.exceptions.HTTPError as exc:
                self._drop()
                failures += 1
                if failures > self._registry.retries:
                    raise RegistryError(f"{self._what}: {_shown(str(exc))}") from None
                self.resumed += 1
                self._registry.sleep(failures - 1)
                continue
            if len(data) > left:
                self._drop()
                raise RegistryError(f"{self._what}: more data than the descriptor's size "
                                    f"{self.size}: refused")
            if not data and left:  # ended early without an error: resume
                self._drop()
                failures += 1
                if failures > self._registry.retries:
                    raise RegistryError(f"{self._what}: the download keeps ending at byte "
                                        f"{self.offset} of {self.size}")
                self.resumed += 1
                self._registry.sleep(failures - 1)
                continue
            self.offset += len(data)
            return data

    def read_all(self) -> bytes:
        out = []
        while data := self.read(_CHUNK):
            out.append(data)
        return b"".join(out)

    def _drop(self) -> None:
        if self._resp is not None:
            _discard(self._resp)
            self._resp = None

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _discard(resp: urllib3.BaseHTTPResponse) -> None:
    """Give the connection back (drained when short, else closed)."""
    with suppress(Exception):
        resp.drain_conn()
    with suppress(Exception):
        resp.release_conn()


def read_capped(resp: urllib3.BaseHTTPResponse, cap: int, what: str) -> bytes:
    """The whole body, or RegistryError when it passes ``cap`` bytes."""
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise RegistryError(f"{what}: {length} bytes, more than the {cap} allowed")
    out: list[bytes] = []
    total = 0
    while data := resp.read(min(_CHUNK, cap + 1 - total) or 1, decode_content=False):
        out.append(data)
        total += len(data)
        if total > cap:
            raise RegistryError(f"{what}: more than the {cap} bytes allowed")
    return b"".join(out)


def _error_text(resp: urllib3.BaseHTTPResponse) -> str:
    """``: CODE: message`` from a registry's JSON error body, if it has one."""
    try:
        data = read_capped(resp, _MAX_ERROR_BODY, "error")
        doc = parse_json(data, "error")
    except (ImageError, Exception):
        return ""
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        return ""
    parts = []
    for err in doc["errors"][:3]:
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
            parts.append(": ".join(_shown(str(x), 120) for x in (code, message)
                                   if isinstance(x, str) and x))
    return (": " + "; ".join(p for p in parts if p)) if any(parts) else ""


def _status_error(resp: urllib3.BaseHTTPResponse, what: str) -> RegistryError:
    status = resp.status
    reason = {401: "unauthorized", 403: "denied", 404: "not found"}.get(status, "")
    return RegistryError(f"{what}: {reason or 'the registry answered'} ({status})"
                         + _error_text(resp), status)
