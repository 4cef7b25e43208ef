"""The journal's path arithmetic on strings gives what pathlib gives: destinations of wheel
members, the nearest existing directory, and the anchor entry holding a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from safepip import journal

RELATIVE = [
    ("pkg/mod.py",),
    ("pkg//mod.py",),
    ("./pkg/./mod.py",),
    ("pkg/sub/",),
    ("",),
    (".",),
    ("/abs/f",),
    ("a", "/b", "c"),
    ("name-1.0.dist-info", "INSTALLER"),
    ("", "inc/h.h"),
]


@pytest.mark.parametrize("base", ["/env/lib/site", "/"])
@pytest.mark.parametrize("relative", RELATIVE)
def test_join_is_pathlibs(base: str, relative: tuple[str, ...]) -> None:
    assert journal._join(base, *relative) == str(Path(base, *relative))


MEMBERS = [
    "pkg/mod.py",
    "pkg/./mod.py",
    "p-1.data/scripts/tool",
    "p-1.data/scripts/d/t/",
    "p-1.data/scripts/",
    "p-1.data/headers/h.h",
    "p-1.data/purelib/q/r.py",
    "p-1.data/platlib/q.so",
    "p-1.data/data/share/x",
    "p-1.data/unknown/z",
    "p-1.data",
    "p-1.dist-info/METADATA",
]


@pytest.mark.parametrize("member", MEMBERS)
def test_destination_is_where_the_pathlib_rule_puts_it(member: str) -> None:
    scheme = journal._Scheme(
        Path("/v/pure"), Path("/v/plat"), Path("/v/bin"), Path("/v"), Path("/v/inc"), Path("/v")
    )
    dirs = {
        k: str(getattr(scheme, k)) for k in ("purelib", "platlib", "data", "scripts", "headers")
    }
    first, _, rest = member.partition("/")
    kind, _, inner = rest.partition("/")
    if first.endswith(".data") and rest:
        expected = {
            "scripts": scheme.scripts / Path(inner).name,
            "headers": scheme.headers / "p" / inner,
            "purelib": scheme.purelib / inner,
            "platlib": scheme.platlib / inner,
            "data": scheme.data / inner,
        }.get(kind, scheme.platlib / inner)
    else:
        expected = scheme.platlib / member
    assert journal._destination(dirs, "/v/plat", member, "p-1.dist-info") == str(expected)


def test_existing_ancestor_and_top_entry(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "old" / "sub").mkdir(parents=True)
    bin_dir = tmp_path / "site" / "bin"
    bin_dir.mkdir()
    nearest: dict[str, str] = {}
    for directory, found in [
        (site / "new" / "deep" / "er", site),
        (site / "new" / "deep", site),
        (site / "old" / "sub" / "x", site / "old" / "sub"),
        (site / "old", site / "old"),
        (Path("/nonexistent-root-entry/a"), Path("/")),
    ]:
        assert journal._existing_ancestor(str(directory), nearest) == str(found)
    top = journal._top_entries([site, bin_dir])
    assert top(str(site / "pkg" / "mod.py")) == str(site / "pkg")
    assert top(str(site / "mod.py")) == str(site / "mod.py")
    assert top(str(bin_dir / "tool")) == str(bin_dir / "tool")  # the deepest anchor
    assert top(str(site)) is None
    assert top(str(tmp_path / "sitex" / "a")) is None
    assert journal._top_entries([Path("/")])("/etc/x") == "/etc"
