"""The engine's container records: one directory per container under the state root
(``/run/nsbind`` for root, ``$XDG_RUNTIME_DIR/nsbind`` otherwise), a name index that
keeps names unique, and the status derived from the record and the kernel.

Layout under the state root::

    containers/<id>/record.json   the record (replaced atomically)
    containers/<id>/lock          flock'd by whoever changes or removes the record;
                                  made with the directory, never again (a process that
                                  races a removal finds no container, puts nothing back)
    names/<name>                  made with O_EXCL: holds the id; the name is taken
    oci/                          the container layer's state root (nsbind.oci)

A record outlives the processes it names: a monitor that dies leaves it behind, and
the status is then read from the kernel (the process, checked against its start
time) instead of the monitor's last word.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from nsbind import jsonlite
from nsbind.charsets import ALNUM, HEX, Word
from nsbind.ctxlite import contextmanager, suppress
from nsbind.engine.errors import EngineError
from nsbind.oci.state import process_alive
from nsbind.timestamps import rfc3339

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["MAX_RECORD_BYTES", "RecordStore", "default_state_root", "flocked", "now",
           "status_of"]

MAX_RECORD_BYTES = 1 << 20  #: a record is a few KiB; a bigger file is not ours
_NAME = Word(ALNUM, ALNUM + "_.-", max_len=128)  # [a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}
_ID_PREFIX = Word(HEX, HEX, max_len=64)  # a container id or its start
_ID = Word(HEX, HEX, min_len=64, max_len=64)
_ADJECTIVES = ("brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen",
               "lucid", "merry", "nifty", "proud", "quiet", "rapid", "sharp", "tender",
               "upbeat", "vivid", "witty", "zealous")
_NOUNS = ("almeida", "babbage", "curie", "darwin", "euler", "fermat", "gauss", "hopper",
          "jepsen", "kepler", "lovelace", "meitner", "noether", "pascal", "ritchie",
          "shannon", "thompson", "turing", "wozniak", "yalow")


def default_state_root() -> str:
    """``/run/nsbind`` for root, ``$XDG_RUNTIME_DIR/nsbind`` (or ``/tmp/nsbind-<uid>``)
    otherwise."""
    if os.geteuid() == 0:
        return "/run/nsbind"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/nsbind-{os.geteuid()}"
    return os.path.join(base, "nsbind")


def now() -> str:
    """The time as Docker writes it: RFC 3339 in UTC with nanoseconds."""
    return rfc3339()


def _pick(words: tuple[str, ...] | list[str]) -> str:
    """A word drawn from the kernel's random source (as secrets.choice, whose import
    brings hashlib and OpenSSL's start-up to every run)."""
    return words[int.from_bytes(os.urandom(4), "little") % len(words)]


def status_of(record: dict[str, Any]) -> str:
    """``created``, ``running``, ``paused`` or ``exited``: the monitor's word once it
    recorded an exit, else the kernel's (a process that is gone has exited, even when
    no one was left to record how)."""
    if record.get("exitCode") is not None:
        return "exited"
    pid, started = int(record.get("pid") or 0), record.get("startTime")
    if not pid:
        return "created"
    if not isinstance(started, int) or not process_alive(pid, started):
        return "exited"
    return "paused" if record.get("paused") else "running"


def _open_lock(path: str, create: bool) -> int:
    """The lock file ``path`` opened (never through a link), made 0600 if missing when
    ``create``, else FileNotFoundError."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    return os.open(path, flags, 0o600)


@contextmanager
def _holding(fd: int) -> Iterator[None]:
    """An exclusive flock on ``fd`` for the block; ``fd`` closed at its end."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def flocked(path: str, *, create: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on the file ``path`` (never through a link) for the block;
    made 0600 if missing when ``create``, else FileNotFoundError on entering."""
    with _holding(_open_lock(path, create)):
        yield


class RecordStore:
    """The records under ``root`` (see the module doc)."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_state_root())
        for sub in ("", "containers", "names", "oci"):
            os.makedirs(os.path.join(self.root, sub), mode=0o700, exist_ok=True)

    @property
    def oci_root(self) -> str:
        """The container layer's state root."""
        return os.path.join(self.root, "oci")

    def directory(self, container_id: str) -> str:
        if not _ID.matches(container_id):
            raise EngineError(f"invalid container id {container_id!r}")
        return os.path.join(self.root, "containers", container_id)

    # ------------------------------------------------------------- creating

    def reserve(self, name: str | None) -> tuple[str, str]:
        """A new id and ``name`` (or a generated one), both taken: the container's
        directory made, the name claimed.  EngineError (125) when the name is in use."""
        container_id = os.urandom(32).hex()  # as secrets.token_hex(32)
        if name is None:
            for _ in range(100):
                name = f"{_pick(_ADJECTIVES)}_{_pick(_NOUNS)}"
                if self._claim(name, container_id):
                    break
            else:
                name = f"c_{container_id[:12]}"
                self._claim(name, container_id, must=True)
        else:
            if not _NAME.matches(name):
                raise EngineError(f"invalid container name {name!r}: only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            self._claim(name, container_id, must=True)
        directory = self.directory(container_id)
        try:
            os.mkdir(directory, 0o700)
            try:
                os.close(os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT
                                 | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
            except BaseException:
                os.rmdir(directory)
                raise
        except BaseException:
            self._release(name, container_id)
            raise
        return container_id, name

    def _claim(self, name: str, container_id: str, *, must: bool = False) -> bool:
        path = os.path.join(self.root, "names", name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                         | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            if must:
                owner = self._name_owner(name)
                raise EngineError(f'the container name "/{name}" is already in use by '
                                  f'container "{owner or "?"}"', err=errno.EEXIST) from None
            return False
        with os.fdopen(fd, "w") as f:
            f.write(container_id)
        return True

    def _name_owner(self, name: str) -> str | None:
        try:  # os calls: a text file in ascii imports its codec, 0.4 ms of a run
            fd = os.open(os.path.join(self.root, "names", name),
                         os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO: no wait
            try:
                text = os.read(fd, 65).decode("ascii")
            finally:
                os.close(fd)
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return text if _ID.matches(text) else None

    def _release(self, name: str, container_id: str) -> None:
        if self._name_owner(name) == container_id:
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(self.root, "names", name))

    # ------------------------------------------------------------- records

    @contextmanager
    def locked(self, container_id: str) -> Iterator[None]:
        """Hold the container's record lock (made by :meth:`reserve`; a container that is
        gone, or being removed, is EngineError "No such container")."""
        try:  # (only the lock's open: the block's own errors pass as they are)
            fd = _open_lock(os.path.join(self.directory(container_id), "lock"), False)
        except (FileNotFoundError, NotADirectoryError):
            raise EngineError(f"No such container: {container_id}",
                              err=errno.ENOENT) from None
        with _holding(fd):
            yield

    def save(self, record: dict[str, Any]) -> None:
        """Write the record atomically (a temporary file renamed over it)."""
        directory = self.directory(record["id"])
        tmp = os.path.join(directory, f"record.json.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(jsonlite.dumps(record))  # one line: json's C encoder (indent is Python's)
        os.replace(tmp, os.path.join(directory, "record.json"))

    def update(self, container_id: str, **fields: Any) -> dict[str, Any]:
        """Set ``fields`` in the record, under its lock; the new record."""
        with self.locked(container_id):
            record = self.load(container_id)
            record.update(fields)
            self.save(record)
            return record

    def load(self, container_id: str) -> dict[str, Any]:
        """The record of ``container_id`` (EngineError "No such container" when absent)."""
        path = os.path.join(self.directory(container_id), "record.json")
        try:  # O_NONBLOCK: a FIFO put in its place must not hang the open
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            raise EngineError(f"No such container: {container_id}", err=errno.ENOENT) from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise EngineError(f"container {container_id}: its record is a symlink, not a "
                              "file") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise EngineError(f"container {container_id}: its record is not a file")
            reader = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        with reader:
            data = reader.read(MAX_RECORD_BYTES + 1)
        try:
            record: dict[str, Any] = jsonlite.loads(data)
            if len(data) > MAX_RECORD_BYTES or record.get("id") != container_id:
                raise ValueError
        except ValueError:
            raise EngineError(f"container {container_id}: its record is damaged") from None
        return record

    def ids(self) -> list[str]:
        """Every container with a record, oldest first."""
        found = []
        folder = os.path.join(self.root, "containers")
        for name in os.listdir(folder):
            if not _ID.matches(name):
                continue
            try:  # one stat: a record removed meanwhile (a --rm that ended) is left out
                st = os.stat(os.path.join(folder, name, "record.json"), follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((st.st_ctime_ns, name))
        return [name for _, name in sorted(found)]

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first (one removed meanwhile is left out)."""
        out = []
        for container_id in self.ids():
            with suppress(EngineError):
                out.append(self.load(container_id))
        return sorted(out, key=lambda r: str(r.get("created", "")))

    def find(self, ref: str) -> str:
        """The id a name, a full id or a unique id prefix names, as Docker looks them up;
        EngineError "No such container" otherwise."""
        if _NAME.matches(ref):
            owner = self._name_owner(ref)
            if owner is not None and os.path.isdir(self.directory(owner)):
                return owner
        if _ID_PREFIX.matches(ref):
            matches = [i for i in self.ids() if i.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise EngineError(f"multiple containers found with provided prefix: {ref}")
        raise EngineError(f"No such container: {ref}", err=errno.ENOENT)

    def remove(self, container_id: str) -> None:
        """Forget the container: its name and its record directory.  Under the record
        lock the record goes first, the lock file last: a process waiting on the lock
        then finds no record, one opening it finds no lock ("No such container")."""
        try:
            with self.locked(container_id):
                self._release_names_of(container_id)
                self._remove_tree(container_id)
        except EngineError:  # no lock file: gone already, or a reserve that failed
            self._remove_tree(container_id)

    def _release_names_of(self, container_id: str) -> None:
        """The name the record gives, or (a record that cannot be read) every name this
        container holds."""
        try:
            names = [str(self.load(container_id).get("name"))]
        except EngineError:
            names = [n for n in os.listdir(os.path.join(self.root, "names"))
                     if _NAME.matches(n)]
        for name in names:
            self._release(name, container_id)

    def _remove_tree(self, container_id: str) -> None:
        """The record directory: its record, what else is in it, the lock, itself."""
        directory = self.directory(container_id)
        with suppress(FileNotFoundError, IsADirectoryError):  # (not a record)
            os.unlink(os.path.join(directory, "record.json"))
        try:
            with os.scandir(directory) as found:
                entries = sorted(found, key=lambda e: e.name == "lock")  # the lock last
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):  # (nsbind makes none)
                from nsbind.image.tree import remove_path

                with suppress(OSError):  # as rmtree(ignore_errors=True) did
                    remove_path(entry.path)
            else:
                with suppress(OSError):  # as rmtree(ignore_errors=True) did
                    os.unlink(entry.path)
        with suppress(OSError):
            os.rmdir(directory)

    def release_name(self, name: str, container_id: str) -> None:
        """Give ``name`` up if ``container_id`` holds it (a create that failed)."""
        self._release(name, container_id)
