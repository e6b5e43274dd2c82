"""Pull and push over the OCI distribution API, against the real registry.

Debian's ``docker-registry`` (the CNCF distribution registry) runs on 127.0.0.1 with
a config and storage of its own under the module's temp dir, in three variants:
plain HTTP, htpasswd basic auth, and TLS with a CA made here by openssl (handed to
nsbind as a ``cert_dir``; /etc/containers/certs.d is never touched).  Images get
into it with skopeo, and what nsbind pulls is compared with what ``image.load``
gives for the same layout.  Hostile registries are tiny http.server handlers on
loopback: a corrupt blob, 503s, a connection cut in the middle of a blob.  Every
process is stopped by pid and every file is under tmp_path.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import io
import json
import os
import pathlib
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clients import REGISTRY, Registry, skopeo
from nsbind.image import ImageError, Store, load, registrycli
from nsbind.image.auth import credentials, forget_credentials, store_credentials
from nsbind.image.pulling import pull
from nsbind.image.pushing import push
from nsbind.image.reference import parse_reference
from nsbind.image.registry import RegistryError

TESTREPO = str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata" / "images" /
               "regclient-testrepo")


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None and not os.access(tool, os.X_OK):
            pytest.skip(f"{tool} is not installed (scripts/test.sh installs docker-registry, "
                        "apache2-utils, skopeo)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _need(REGISTRY, "skopeo")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    try:
        # the reference image: regclient's multi-platform index (5 gzip layers on amd64)
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{TESTREPO}:v3",
               f"docker://{reg.host}/test/repo:v3")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _need(REGISTRY, "skopeo", "htpasswd")
    reg = Registry(tmp_path_factory.mktemp("authreg"), htpasswd=("alice", "s3cret-pw"))
    try:
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret-pw",
               f"oci:{TESTREPO}:v1", f"docker://{reg.host}/private/img:v1")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(autouse=True)
def _auth_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials of the test's own: ~/.docker/config.json is never read or written."""
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))


def _tree(dirs: list[str]) -> dict[str, str]:
    """Every path of some layer directories (one after another) with what it is."""
    out = {}
    for index, top in enumerate(dirs):
        for dirpath, dirnames, files in os.walk(top):
            for name in dirnames + files:
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                what = oct(st.st_mode)
                if os.path.isfile(full) and not os.path.islink(full):
                    what += hashlib.sha256(pathlib.Path(full).read_bytes()).hexdigest()
                elif os.path.islink(full):
                    what += os.readlink(full)
                out[f"{index}/{os.path.relpath(full, top)}"] = what
    return out


def _cli(argv: list[str], root: str | None) -> tuple[int, str, str]:
    """registrycli as the nsbind command will run it, in this process."""
    parser = argparse.ArgumentParser(prog="nsbind")
    parser.add_argument("--root")
    sub = parser.add_subparsers(dest="command", required=True)
    registrycli.add_parsers(sub)
    args = parser.parse_args(([f"--root={root}"] if root else []) + argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = registrycli.run(args)
    return code, out.getvalue(), err.getvalue()


# --- references ---------------------------------------------------------------------------

@pytest.mark.unprivileged
@pytest.mark.parametrize(("text", "expected"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("user/app", "docker.io/user/app:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:x", "docker.io/library/busybox:x"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
    ("127.0.0.1:5000/repo:tag", "127.0.0.1:5000/repo:tag"),
    ("quay.io/podman/stable", "quay.io/podman/stable:latest"),
    ("ghcr.io/a-b/c_d.e__f:v1.2-x", "ghcr.io/a-b/c_d.e__f:v1.2-x"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
    ("r.io:443/x:t@sha256:" + "b" * 64, "r.io:443/x:t@sha256:" + "b" * 64),
])
def test_reference_normalized(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


@pytest.mark.unprivileged
@pytest.mark.parametrize("text", [
    "", "Busybox", "busybox:", "busybox:-x", "a//b", "/busybox", "busybox/",
    "busybox@sha256:abc", "busybox@md5:" + "a" * 32, "host:port/x", "a" * 256,
    "busybox:" + "t" * 129, "bad_host-.io:5000/x/../y",
])
def test_reference_refused(text: str) -> None:
    with pytest.raises(ImageError):
        parse_reference(text)


@pytest.mark.unprivileged
def test_reference_parts() -> None:
    ref = parse_reference("busybox")
    assert (ref.registry, ref.repository, ref.tag, ref.api_host, ref.familiar()) == (
        "docker.io", "library/busybox", "latest", "registry-1.docker.io", "busybox:latest")
    ref = parse_reference(f"127.0.0.1:5000/r@sha256:{'c' * 64}")
    assert ref.target == f"sha256:{'c' * 64}" and ref.tag is None


# --- pull from the real registry ----------------------------------------------------------

@pytest.mark.unprivileged
def test_pull_matches_load(registry: Registry, tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "pulled"))
    done = pull(f"{registry.host}/test/repo:v3", store=store, tls_verify=False)
    assert done.fetched == 5
    with load(TESTREPO, tag="v3") as img:
        loaded = Store(str(tmp_path / "loaded"))
        dirs = loaded.unpack(img)
        assert done.image.config_digest == img.config_digest
        assert done.image.layers == tuple(layer.diff_id for layer in img.layers)
        assert done.image.config == img.config
        assert done.image.platform == img.platform
    assert done.image.tags == (f"{registry.host}/test/repo:v3",)
    pulled_dirs = [store.layer_path(d) for d in done.image.layers]
    assert _tree(pulled_dirs) == _tree(dirs)
    assert os.listdir(os.path.join(store.path, "tmp")) == []
    # again: every layer is in the store, nothing is downloaded
    again = pull(f"{registry.host}/test/repo:v3", store=store, tls_verify=False)
    assert again.fetched == 0 and again.digest == done.digest
    # by digest, tagged both ways now
    by_digest = pull(f"{registry.host}/test/repo@{done.digest}", store=store,
                     tls_verify=False)
    assert by_digest.image.config_digest == done.image.config_digest
    assert set(by_digest.image.tags) == {f"{registry.host}/test/repo:v3",
                                         f"{registry.host}/test/repo@{done.digest}"}


@pytest.mark.unprivileged
def test_pull_platform(registry: Registry, tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "s"))
    done = pull(f"{registry.host}/test/repo:v3", store=store, tls_verify=False,
                platform=("linux", "arm64"))
    with load(TESTREPO, tag="v3", platform=("linux", "arm64")) as img:
        assert done.image.config_digest == img.config_digest
    with pytest.raises(ImageError, match="no image for linux/s390x"):
        pull(f"{registry.host}/test/repo:v3", store=store, tls_verify=False,
             platform=("linux", "s390x"))


@pytest.mark.unprivileged
def test_pull_command(registry: Registry, tmp_path: pathlib.Path) -> None:
    root = str(tmp_path / "store")
    code, out, err = _cli(["pull", "--tls-verify=false", f"{registry.host}/test/repo:v3"], root)
    assert code == 0, err
    assert out.splitlines()[-1] == f"{registry.host}/test/repo:v3"
    assert "Digest: sha256:" in out
    code, out, err = _cli(["pull", "-q", "--tls-verify=false",
                           f"{registry.host}/test/repo:v3"], root)
    assert (code, out) == (0, f"{registry.host}/test/repo:v3\n")


@pytest.mark.unprivileged
@pytest.mark.parametrize("ref", ["test/nothing:v3", "test/repo:nope"])
def test_pull_unknown(registry: Registry, tmp_path: pathlib.Path, ref: str) -> None:
    root = str(tmp_path / "store")
    code, _out, err = _cli(["pull", "-q", "--tls-verify=false", f"{registry.host}/{ref}"], root)
    assert code == 1
    assert err.count("\n") == 1 and "not found (404)" in err and "Traceback" not in err
    assert Store(root).images() == []
    assert os.listdir(os.path.join(root, "layers", "sha256")) == []


@pytest.mark.unprivileged
def test_pull_bad_arguments(tmp_path: pathlib.Path) -> None:
    code, _, err = _cli(["pull", "--platform", "linux", "x"], str(tmp_path))
    assert code == 125 and "--platform" in err
    code, _, err = _cli(["pull", "Upper/case"], str(tmp_path))
    assert code == 1 and "lowercase" in err
    code, _, err = _cli(["push", "--creds", "nocolon", "x"], str(tmp_path))
    assert code == 125 and "nocolon" not in err


@pytest.mark.unprivileged
def test_tls_verify_on_plain_http(registry: Registry, tmp_path: pathlib.Path) -> None:
    with pytest.raises(RegistryError, match="TLS"):
        pull(f"{registry.host}/test/repo:v3", store=str(tmp_path), retries=0)


# --- auth --------------------------------------------------------------------------------

@pytest.mark.unprivileged
def test_pull_basic_auth(auth_registry: Registry, tmp_path: pathlib.Path) -> None:
    ref = f"{auth_registry.host}/private/img:v1"
    root = str(tmp_path / "store")
    code, _, err = _cli(["pull", "-q", "--tls-verify=false", ref], root)
    assert code == 1 and "nsbind login" in err
    code, _, err = _cli(["pull", "-q", "--tls-verify=false", "--creds", "alice:wrong", ref],
                        root)
    assert code == 1 and "unauthorized" in err and "wrong" not in err
    assert auth_registry.host in err and err.count("\n") == 1  # names the registry
    code, _, err = _cli(["login", "--tls-verify=false", "-u", "alice", "-p", "nope",
                         auth_registry.host], root)
    assert code == 1 and "nope" not in err
    assert credentials(auth_registry.host) is None
    code, out, err = _cli(["login", "--tls-verify=false", "-u", "alice", "-p", "s3cret-pw",
                           auth_registry.host], root)
    assert code == 0 and "Login Succeeded" in out, err
    assert credentials(auth_registry.host) == ("alice", "s3cret-pw")
    assert os.stat(os.environ["REGISTRY_AUTH_FILE"]).st_mode & 0o777 == 0o600
    code, _, err = _cli(["pull", "-q", "--tls-verify=false", ref], root)
    assert code == 0, err
    with load(TESTREPO, tag="v1") as img:
        assert Store(root).images()[0].config_digest == img.config_digest
    code, _out, _ = _cli(["logout", auth_registry.host], root)
    assert code == 0 and credentials(auth_registry.host) is None


@pytest.mark.unprivileged
def test_auth_file_keeps_other_keys(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "config.json")
    pathlib.Path(path).write_text(json.dumps({"auths": {"other.io": {"auth": "eDp5"}},
                                              "credHelpers": {"x": "y"}}))
    store_credentials("docker.io", "bob", "pw:with:colons", path)
    doc = json.loads(pathlib.Path(path).read_text())
    assert set(doc["auths"]) == {"other.io", "https://index.docker.io/v1/"}
    assert doc["credHelpers"] == {"x": "y"}
    assert credentials("docker.io", path) == ("bob", "pw:with:colons")
    assert credentials("other.io", path) == ("x", "y")
    assert forget_credentials("docker.io", path) and not forget_credentials("docker.io", path)


# --- TLS ---------------------------------------------------------------------------------

@pytest.mark.unprivileged
def test_pull_tls(tmp_path_factory: pytest.TempPathFactory, tmp_path: pathlib.Path) -> None:
    _need(REGISTRY, "skopeo", "openssl")
    reg = Registry(tmp_path_factory.mktemp("tlsreg"), tls=True)
    try:
        skopeo("copy", f"--dest-cert-dir={reg.cert_dir}/{reg.host}", f"oci:{TESTREPO}:v2",
               f"docker://{reg.host}/tls/img:v2")
        ref = f"{reg.host}/tls/img:v2"
        with pytest.raises(RegistryError, match="TLS"):  # not signed by a system CA
            pull(ref, store=str(tmp_path), retries=0)
        done = pull(ref, store=str(tmp_path), cert_dir=reg.cert_dir)
        with load(TESTREPO, tag="v2") as img:
            assert done.image.config_digest == img.config_digest
    finally:
        reg.stop()


# --- hostile registries ------------------------------------------------------------------

class FakeRegistry:
    """A registry of one image served by http.server on loopback, with faults to inject."""

    def __init__(self, layers: list[bytes], config_extra: dict[str, Any] | None = None
                 ) -> None:
        self.blobs: dict[str, bytes] = {}
        diff_ids = []
        descs = []
        for layer in layers:
            digest = self.add(layer)
            diff_ids.append(digest)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                          "digest": digest, "size": len(layer)})
        config = json.dumps({"architecture": "amd64", "os": "linux", **(config_extra or {}),
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self.add(config), "size": len(config)},
            "layers": descs}).encode()
        self.requests: list[tuple[str, str, str | None]] = []
        self.fault: Callable[[Any, str], bool] = lambda handler, path: False
        self.corrupt: dict[str, bytes] = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, self.headers.get("Range")))
                if fake.fault(self, self.path):
                    return
                body, ctype = b"", "application/json"
                if self.path == "/v2/":
                    body = b"{}"
                elif self.path.startswith("/v2/img/manifests/"):
                    body, ctype = fake.manifest, "application/vnd.oci.image.manifest.v1+json"
                elif self.path.startswith("/v2/img/blobs/"):
                    digest = self.path.rsplit("/", 1)[1]
                    if digest not in fake.blobs:
                        self.send_error(404)
                        return
                    body = fake.corrupt.get(digest, fake.blobs[digest])
                    ctype = "application/octet-stream"
                    start = 0
                    ranged = self.headers.get("Range", "")
                    if ranged.startswith("bytes="):
                        start = int(ranged[6:].rstrip("-"))
                        self.send_response(206)
                        self.send_header("Content-Range",
                                         f"bytes {start}-{len(body) - 1}/{len(body)}")
                        body = body[start:]
                    else:
                        self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.server.block_on_close = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    big = os.urandom(3 << 20)
    server = FakeRegistry([_layer({"a.txt": b"hello"}), _layer({"big.bin": big})])
    try:
        yield server
    finally:
        server.close()


def _pull_fake(fake: FakeRegistry, store: str, **kw: Any) -> Any:
    return pull(f"{fake.host}/img:1", store=store, tls_verify=False, backoff=0.01, **kw)


@pytest.mark.unprivileged
def test_corrupt_blob_refused(fake: FakeRegistry, tmp_path: pathlib.Path) -> None:
    digest = json.loads(fake.manifest)["layers"][1]["digest"]
    good = fake.blobs[digest]
    fake.corrupt[digest] = good[:-10] + b"x" * 10  # same size, wrong bytes
    root = str(tmp_path / "store")
    with pytest.raises(ImageError, match="mismatch"):
        _pull_fake(fake, root)
    st = Store(root)
    assert st.images() == []
    assert not st.has_layer(digest)
    assert os.listdir(os.path.join(root, "tmp")) == []


@pytest.mark.unprivileged
def test_blob_longer_than_descriptor_refused(fake: FakeRegistry, tmp_path: pathlib.Path
                                             ) -> None:
    digest = json.loads(fake.manifest)["layers"][0]["digest"]
    fake.corrupt[digest] = fake.blobs[digest] + b"\0" * 4096
    with pytest.raises(ImageError, match="refused"):
        _pull_fake(fake, str(tmp_path / "store"))
    assert Store(str(tmp_path / "store")).images() == []


@pytest.mark.unprivileged
def test_retry_after_503(fake: FakeRegistry, tmp_path: pathlib.Path) -> None:
    failed: set[str] = set()

    def fault(handler: Any, path: str) -> bool:
        if "/blobs/" in path and path not in failed:
            failed.add(path)
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.send_header("Retry-After", "0")
            handler.end_headers()
            return True
        return False

    fake.fault = fault
    done = _pull_fake(fake, str(tmp_path / "store"))
    assert done.fetched == 2
    blob_gets = [p for m, p, _ in fake.requests if "/blobs/" in p]
    assert len(blob_gets) == 2 * 3  # config and two layers, each twice


@pytest.mark.unprivileged
def test_persistent_503_gives_up(fake: FakeRegistry, tmp_path: pathlib.Path) -> None:
    def fault(handler: Any, path: str) -> bool:
        handler.send_response(503)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    fake.fault = fault
    with pytest.raises(RegistryError, match="503"):
        _pull_fake(fake, str(tmp_path / "store"), retries=2)
    assert len(fake.requests) == 3


@pytest.mark.unprivileged
@pytest.mark.parametrize("ranges", [True, False])
def test_cut_blob_resumed(fake: FakeRegistry, tmp_path: pathlib.Path, ranges: bool) -> None:
    digest = json.loads(fake.manifest)["layers"][1]["digest"]
    cut: list[int] = []

    def fault(handler: Any, path: str) -> bool:
        if path.endswith(digest) and not cut:
            body = fake.blobs[digest]
            cut.append(1)
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[:len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return True
        if not ranges and handler.headers.get("Range"):
            del handler.headers["Range"]  # a registry that ignores ranges: starts over
        return False

    fake.fault = fault
    done = _pull_fake(fake, str(tmp_path / "store"))
    assert done.fetched == 2
    gets = [r for m, p, r in fake.requests if p.endswith(digest)]
    assert len(gets) == 2
    assert (gets[1] is not None) and gets[1].startswith("bytes=")


@pytest.mark.unprivileged
def test_redirect_to_file_refused(fake: FakeRegistry, tmp_path: pathlib.Path) -> None:
    def fault(handler: Any, path: str) -> bool:
        if "/blobs/" in path:
            handler.send_response(307)
            handler.send_header("Location", "file:///etc/passwd")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True
        return False

    fake.fault = fault
    with pytest.raises(RegistryError, match="not an http"):
        _pull_fake(fake, str(tmp_path / "store"))


@pytest.mark.unprivileged
def test_huge_manifest_refused(fake: FakeRegistry, tmp_path: pathlib.Path) -> None:
    fake.manifest = b" " * (5 << 20) + fake.manifest
    with pytest.raises(RegistryError, match="allowed"):
        _pull_fake(fake, str(tmp_path / "store"))


# --- push --------------------------------------------------------------------------------

@pytest.mark.unprivileged
def test_push_round_trip(registry: Registry, tmp_path: pathlib.Path) -> None:
    root = str(tmp_path / "store")
    store = Store(root)
    with load(TESTREPO, tag="v3") as img:
        store.unpack(img)
        original = [store.layer_path(layer.diff_id) for layer in img.layers]
    ref = f"{registry.host}/pushed/img:1"
    code, out, err = _cli(["push", "--tls-verify=false", "v3", ref], root)
    assert code == 0, err
    digest = out.splitlines()[-1].split()[-1]
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == digest and len(info["Layers"]) == 5
    # skopeo's copy back, loaded: the same files as the original layers
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path}/back:1")
    with load(str(tmp_path / "back"), tag="1") as back:
        back_store = Store(str(tmp_path / "back-store"))
        assert _tree(back_store.unpack(back)) == _tree(original)
    # nsbind's pull of it: the same again; a second push uploads nothing
    done = pull(ref, store=str(tmp_path / "pulled"), tls_verify=False)
    assert _tree([Store(str(tmp_path / "pulled")).layer_path(d)
                  for d in done.image.layers]) == _tree(original)
    told: list[str] = []
    assert push("v3", ref, store=store, tls_verify=False,
                on_blob=lambda d, what: told.append(what)) == digest
    assert told == ["exists"] * 5
    # the pulled image, tagged with ref, to another repository of the same registry: its
    # layers tar again to the same bytes, and are mounted from ref's repository
    told.clear()
    again = push(ref, f"{registry.host}/other/img:2", store=str(tmp_path / "pulled"),
                 tls_verify=False, on_blob=lambda d, what: told.append(what))
    assert told == ["mounted"] * 5 and again == digest


def _bearer(fake: FakeRegistry, token_body: bytes, seen: list[tuple[str, str | None]]
            ) -> Callable[[Any, str], bool]:
    """A fault hook that makes ``fake`` a registry with a token server (Docker Hub's flow)."""
    def fault(handler: Any, path: str) -> bool:
        if path.startswith("/token"):
            seen.append((path, handler.headers.get("Authorization")))
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(token_body)))
            handler.end_headers()
            handler.wfile.write(token_body)
            return True
        if handler.headers.get("Authorization") != "Bearer tok-123":
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", f'Bearer realm="http://{fake.host}/token",'
                                'service="fake registry",scope="repository:img:pull"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True
        return False
    return fault


@pytest.mark.unprivileged
def test_bearer_token_flow(fake: FakeRegistry, tmp_path: pathlib.Path) -> None:
    import base64

    seen: list[tuple[str, str | None]] = []
    fake.fault = _bearer(fake, json.dumps({"token": "tok-123", "expires_in": 300}).encode(), seen)
    done = _pull_fake(fake, str(tmp_path / "store"), creds=("bob", "pw"))
    assert done.fetched == 2
    assert len(seen) == 1  # one token for the scope, shared by every request
    path, auth = seen[0]
    assert "scope=repository%3Aimg%3Apull" in path and "service=fake+registry" in path
    assert auth == "Basic " + base64.b64encode(b"bob:pw").decode()


@pytest.mark.unprivileged
def test_huge_token_refused(fake: FakeRegistry, tmp_path: pathlib.Path) -> None:
    body = json.dumps({"token": "tok-123", "pad": "x" * (2 << 20)}).encode()
    fake.fault = _bearer(fake, body, [])
    with pytest.raises(RegistryError, match="token response") as info:
        _pull_fake(fake, str(tmp_path / "store"), creds=("bob", "secret-pw"))
    assert "secret-pw" not in str(info.value)


def test_the_round_trip_through_the_nsbind_command(registry: Registry, tmp_path: pathlib.Path,
                                                  cgroup_parent: str) -> None:
    """The seed's workflow, end to end through the installed command (the README's round
    trip): an image pushed to the registry (by skopeo), ``nsbind pull`` it, ``nsbind run``
    it, ``nsbind push`` it to another name; a container's change ``nsbind commit``-ed,
    ``nsbind image save``-d, read by skopeo, loaded into another store and run there."""
    import sysconfig

    from clients import build_rootfs, oci_archive, tar_rootfs

    root = build_rootfs(tmp_path / "rootfs")
    archive = oci_archive(tar_rootfs(root, str(tmp_path / "layer.tar")),
                          str(tmp_path / "bb.tar"), "localhost/bb:1")
    ref = f"{registry.host}/e2e/busybox:1"
    skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{ref}")
    nsbind = [os.path.join(sysconfig.get_path("scripts"), "nsbind"), "--root",
              str(tmp_path / "store"), "--runroot", str(tmp_path / "state")]

    def run(*argv: str) -> str:
        proc = subprocess.run([*nsbind, *argv], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert run("pull", "-q", "--tls-verify=false", ref) == f"{ref}\n"
    out = run("run", "--rm", "--cgroup-parent", f"/{cgroup_parent}", ref, "sh", "-c",
              "echo pulled and running; echo $$")
    assert out == "pulled and running\n1\n"
    run("push", "--tls-verify=false", ref, f"{registry.host}/e2e/copy:2")
    assert json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/e2e/copy:2"))["Name"].endswith("copy")
    run("run", "--name", "changer", "--cgroup-parent", f"/{cgroup_parent}", ref, "sh", "-c",
        "echo committed > /etc/motd")
    run("commit", "--change", 'CMD ["cat", "/etc/motd"]', "changer", "localhost/mine:1")
    run("rm", "changer")
    saved = str(tmp_path / "mine.tar")
    run("image", "save", "localhost/mine:1", "-o", saved, "--store", str(tmp_path / "store"))
    assert len(json.loads(skopeo("inspect", f"docker-archive:{saved}"))["Layers"]) == 2
    elsewhere = [*nsbind[:1], "--root", str(tmp_path / "other"), "--runroot",
                 str(tmp_path / "other-state")]
    nsbind[:] = elsewhere
    run("image", "load", "-q", saved, "--store", str(tmp_path / "other"))
    assert run("run", "--rm", "--cgroup-parent", f"/{cgroup_parent}",
               "localhost/mine:1") == "committed\n"


def test_a_registry_stopped_mid_pull_then_a_second_pull_completes(
        tmp_path: pathlib.Path) -> None:
    """The real registry killed while a 48 MiB layer streams: the pull fails with a
    registry error once its retries are spent, the store holds no record and no part of
    that layer; the registry back (same storage), a second pull completes."""
    from clients import build_rootfs, oci_archive, tar_rootfs

    _need(REGISTRY, "skopeo")
    (tmp_path / "reg").mkdir()
    reg = Registry(tmp_path / "reg")
    try:
        base = tar_rootfs(build_rootfs(tmp_path / "rootfs"), str(tmp_path / "base.tar"))
        big = tmp_path / "big.tar"
        with tarfile.open(big, "w") as tar:
            data = os.urandom(48 << 20)
            info = tarfile.TarInfo("big.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        archive = oci_archive([base, str(big)], str(tmp_path / "img.tar"), "localhost/big:1")
        ref = f"{reg.host}/stop/big:1"
        skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{ref}")
        store = str(tmp_path / "store")
        seen = {0: 0, 1: 0}
        stopped = threading.Event()

        def on_bytes(index: int, n: int) -> None:
            seen[index] += n
            if index == 1 and seen[1] > (1 << 20) and not stopped.is_set():
                stopped.set()
                reg.stop()  # in the middle of the big layer

        with pytest.raises(RegistryError, match=reg.host):
            pull(ref, store=store, tls_verify=False, retries=2, backoff=0.05,
                 on_bytes=on_bytes)
        assert stopped.is_set() and seen[1] < (48 << 20)
        st = Store(store)
        diff_ids = next(json.loads(d)["rootfs"]["diff_ids"] for d in _configs(archive))
        assert st.images() == [] and not st.has_layer(diff_ids[1])
        assert os.listdir(os.path.join(store, "tmp")) == []
        reg.start()
        done = pull(ref, store=store, tls_verify=False)
        assert list(done.image.layers) == diff_ids and st.has_layer(diff_ids[1])
    finally:
        reg.stop()


def _configs(archive: str) -> list[bytes]:
    """The image configs in an OCI archive."""
    out = []
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        for desc in index["manifests"]:
            manifest = json.load(tar.extractfile(  # type: ignore[arg-type]
                "blobs/sha256/" + desc["digest"].split(":")[1]))
            out.append(tar.extractfile(  # type: ignore[union-attr]
                "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]).read())
    return out
