"""Run the tests that need no privilege as an unprivileged user, as users run nsbind.

    python3 tests/unprivileged.py [pytest args]      # as root: it makes the user

This, as root:

- makes a user ``nsbu<pid>`` with one range of 65,536 subordinate uids and gids
  (tests/testuser.py: /etc's account files are restored byte for byte afterwards),
- delegates a cgroup v2 subtree to it as systemd's ``Delegate=yes`` does: a cgroup at
  the v2 root (``nsbind-unpriv-<pid>``) owned by the user, with its cgroup.procs,
  cgroup.subtree_control and cgroup.threads; the tests run in a leaf below it
  (``pytest``) and make theirs beside it ($NSBIND_TEST_CGROUP names the subtree),
- runs ``python -m pytest`` as that user (setpriv: no capabilities, no groups but its
  own), where conftest keeps only the tests marked ``unprivileged``,
- then kills what is left in the subtree, removes it, the user and its home.

The interpreter is this one.  Where its prefix lies under a directory other users
cannot enter (pyenv under /root, mode 0700), the user's process runs in a private
mount namespace in which that directory is a 0755 view holding only the path to the
interpreter; nothing else of it is visible, and nothing is mounted on the host.

Prints ``unprivileged (uid N): N passed, M failed, K skipped`` and pytest's summary;
exits with pytest's status.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import vm
import vmrecords
from testuser import delegated_cgroup, made_user

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _hidden_ancestor(path: str) -> str | None:
    """The highest directory above ``path`` that other users may not enter, if any."""
    parts = pathlib.PurePath(path).parts
    for i in range(2, len(parts)):
        if not os.stat(os.path.join(*parts[:i])).st_mode & 0o001:
            return os.path.join(*parts[:i])
    return None


def _python_view(scratch: pathlib.Path) -> str:
    """Shell lines that make this interpreter reachable for the user (see above)."""
    prefix = os.path.realpath(sys.base_prefix)
    hidden = _hidden_ancestor(os.path.join(prefix, "bin"))
    if hidden is None:
        return ""
    inner = pathlib.PurePath(prefix).relative_to(hidden).parts[0]
    view = scratch / "view"
    (view / inner).mkdir(parents=True)
    os.chmod(view, 0o755)
    return (f"mount -n --bind {hidden}/{inner} {view}/{inner} && "
            f"mount -n --rbind {view} {hidden} && ")


def command(user: str, uid: int, gid: int, home: pathlib.Path, procs: str, subtree: str,
            args: list[str], scratch: pathlib.Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run pytest as ``user``."""
    env = {"PATH": PATH, "HOME": str(home), "USER": user, "LOGNAME": user,
           "XDG_RUNTIME_DIR": str(home / "run"), "XDG_DATA_HOME": str(home / "data"),
           "NSBIND_TEST_CGROUP": subtree, "PYTHONDONTWRITEBYTECODE": "1", "PY_COLORS": "0"}
    for key in ("CI", vm.GUEST_ENV):
        if key in os.environ:
            env[key] = os.environ[key]
    # its temporary files in its home, removed with it (not a /tmp/pytest-of-<user> that
    # would outlive the user)
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
              f"--basetemp={home / 'pytest'}", *args]
    script = (f"{_python_view(scratch)}echo $$ > {procs} && "
              f"exec setpriv --reuid={uid} --regid={gid} --init-groups "
              "--inh-caps=-all --bounding-set=-all \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "sh",
            *pytest], env


def run(args: list[str] | None = None) -> tuple[int, str]:
    """Run the unprivileged pass; (pytest's status, its output)."""
    if os.geteuid() != 0:
        raise PermissionError("tests/unprivileged.py makes a user and a cgroup: run as root")
    name = f"nsbu{os.getpid() % 100000}"
    with tempfile.TemporaryDirectory(prefix="nsbind-unpriv-") as tmp:
        scratch = pathlib.Path(tmp)
        os.chmod(scratch, 0o755)
        home = scratch / "home"
        with made_user(name, home, subids=True) as entry:
            for d in ("run", "data"):
                (home / d).mkdir(mode=0o700)
                os.chown(home / d, entry.pw_uid, entry.pw_gid)
            with delegated_cgroup(entry.pw_uid, entry.pw_gid) as (subtree, procs):
                cmd, env = command(name, entry.pw_uid, entry.pw_gid, home, procs, subtree,
                                   args or ["tests"], scratch)
                proc = subprocess.run(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
        return proc.returncode, proc.stdout


def main(argv: list[str] | None = None) -> int:
    code, output = run(argv if argv is not None else sys.argv[1:])
    print(output, end="")
    counts, summary = vmrecords.pytest_counts(output)
    print(f"unprivileged: {counts}\n{summary}")
    return code


if __name__ == "__main__":
    sys.exit(main())
