"""Children sharing this process's memory leave its dumpable mark as they found it
(nsbind.sharedchild): a child's change of credentials clears the mark of the memory
it shares, this process's too, until the parent sets it again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nsbind import Namespaces, spawn
from nsbind._native import lib
from nsbind._sys.proc import get_dumpable, set_dumpable


@pytest.fixture
def dumpable() -> Iterator[None]:
    """This process dumpable for the test (an earlier one may have left it not),
    and as it was afterwards."""
    was = get_dumpable()
    set_dumpable(True)
    try:
        yield
    finally:
        set_dumpable(was)


@pytest.mark.parametrize("kwargs", [
    {"uid": 65534, "gid": 65534},  # vfork style: setresuid in our memory
    {"namespaces": Namespaces(user=True, uid_map=[(0, 100000, 65536)],
                              gid_map=[(0, 100000, 65536)])},  # waits for its id maps
], ids=["uid", "user-namespace"])
def test_a_child_that_changes_its_credentials_leaves_this_process_dumpable(
        dumpable: None, kwargs: dict[str, object]) -> None:
    if not lib.nsb_spawn_has_vm_clone():
        pytest.skip("clone3 cannot run a child on a stack of its own on this architecture")
    assert spawn(["true"], **kwargs).wait() == 0  # type: ignore[arg-type]
    assert get_dumpable()


def test_a_process_made_non_dumpable_stays_so(dumpable: None) -> None:
    set_dumpable(False)
    assert spawn(["true"], uid=65534, gid=65534).wait() == 0
    assert not get_dumpable()
