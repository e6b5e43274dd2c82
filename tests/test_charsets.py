"""The name checks that run without the regular expression engine (``nsbind.charsets``
words, and the image reference's and the OCI version's grammars) accept exactly what
the regular expressions they replace accept."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nsbind import mounts
from nsbind.charsets import ALNUM, HEX, Word
from nsbind.engine import etcfiles, networks, records, runopts
from nsbind.image import model, reference
from nsbind.oci import validate

pytestmark = pytest.mark.unprivileged

#: characters each check cares about, and some it must refuse (Unicode digits and
#: letters, which re's \d and \w take and [0-9] does not; whitespace; NUL)
ALPHABET = "aZz09f_-.+:[]/=@ \n\0\u00e9\u0663\uff21"
TEXT = st.text(alphabet=ALPHABET, max_size=12) | st.text(max_size=6)

#: each check, and the regular expression it stands in for
CHECKS: dict[str, tuple[Callable[[str], object], str, int]] = {
    "records name": (records._NAME.matches, r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}", 0),
    "records id prefix": (records._ID_PREFIX.matches, r"[0-9a-f]{1,64}", 0),
    "records id": (records._ID.matches, r"[0-9a-f]{64}", 0),
    "mount option name": (mounts._OPTION_NAME.matches, r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", 0),
    "cgroup name": (mounts._CGROUP_NAME.matches, r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", 0),
    "hostname label": (etcfiles._LABEL.matches,
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", 0),
    "network name": (networks._NAME.matches, r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}", 0),
    "digest": (model._DIGEST.matches, r"sha256:[0-9a-f]{64}", 0),
    "run name": (runopts._NAME.matches, r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", 0),
    "run label": (runopts._LABEL.matches, r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?", 0),
    "seccomp arch": (validate._ARCH.matches, r"SCMP_ARCH_[A-Z0-9_]+", 0),
    "oci version": (validate._version_ok,
                    r"1\.[012]\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?", 0),
    "image tag": (reference._TAG.matches, r"[\w][\w.-]{0,127}", re.ASCII),
    "image path component": (reference._component_ok,
                             r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", 0),
    "registry host": (reference._host_ok,
                      r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:"
                      r"[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])"
                      r"(?::[0-9]+)?", 0),
}

#: strings near each check's edges
EDGES = ["", "a", "-", "a-", "-a", "a--b", "a__b", "a___b", "a._b", "a.b", "a..b", "A",
         "0" * 64, "f" * 64, "f" * 65, "a" * 63, "a" * 64, "a" * 65, "a" * 128, "a" * 129,
         "1.0.2", "1.2.0-rc.1+build.5", "1.3.0", "1.0.", "1.0.2-", "1.0.2+", "1.0.٣",
         "1.0.2+a+b", "1.0.2a", "localhost", "localhost:5000", "[::1]:5000", "[::1]",
         "[::1]:", "[]", "host.:1", "a.b-c.d:0", "SCMP_ARCH_X86_64", "SCMP_ARCH_",
         "sha256:" + "0" * 64, "sha256:" + "0" * 63, "_x", "x_", "lowerdir+", "٣"]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(sorted(CHECKS)), TEXT | st.sampled_from(EDGES))
@example("records id", "0" * 64)
@example("digest", "sha256:" + "a" * 64)
def test_each_check_accepts_what_its_pattern_accepts(check: str, text: str) -> None:
    accepts, pattern, flags = CHECKS[check]
    assert bool(accepts(text)) == bool(re.fullmatch(pattern, text, flags)), (check, text)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_each_check_on_every_edge(check: str) -> None:
    accepts, pattern, flags = CHECKS[check]
    got = {text: bool(accepts(text)) for text in EDGES}
    assert got == {text: bool(re.fullmatch(pattern, text, flags)) for text in EDGES}
    assert any(got.values()), f"{check}: no edge is accepted: the edges miss it"


def test_a_word_bounds_its_length_and_its_last_character() -> None:
    word = Word(ALNUM, ALNUM + "-", last=ALNUM, min_len=2, max_len=4)
    assert [word.matches(t) for t in ("a", "ab", "a-b", "a--b", "a---b", "ab-")] == [
        False, True, True, True, False, False]
    assert Word(HEX, HEX, min_len=3, max_len=3, prefix="x:").matches("x:abc")
    assert not Word(HEX, HEX, prefix="x:").matches("abc")
