"""The typosquatting gate: which names resemble popular ones, and what is done about them."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from safepip.cli import main
from safepip.config import Settings
from safepip.gates import known_names, typosquat_findings
from safepip.models import FileLink, IndexSource, InstalledDist, Pin, Plan, ProjectPage
from safepip.net import NetSettings
from safepip.typosquat import (
    PopularNames,
    ProjectFacts,
    TyposquatPolicy,
    edit_distance,
    judge,
    load_popular_names,
)
from tests.kit import Index, IndexServer

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 1, tzinfo=UTC)
POPULAR = PopularNames(
    [
        "requests",
        "python-dateutil",
        "numpy",
        "boto3",
        "jellyfish",
        "typing-extensions",
        "colorama",
        "flask",
        "pyqt6",
        "tox",
        "furl",
        "mypy-boto3-rds",
    ]
)


@pytest.mark.parametrize(
    ("name", "popular", "how"),
    [
        ("reqeusts", "requests", "one letter different"),  # swapped
        ("requestss", "requests", "one letter different"),  # duplicated
        ("requets", "requests", "one letter different"),  # missing
        ("numoy", "numpy", "one letter different"),  # neighbouring key
        ("python_dateutil", None, None),  # the same project, spelled as pip normalises it
        ("pythondateutil", "python-dateutil", "the same name with - _ . moved"),
        ("python-requests", "requests", "a popular name with a python/py prefix or suffix"),
        ("pyrequests", "requests", "a popular name with a python/py prefix or suffix"),
        ("flask-py", "flask", "a popular name with a python/py prefix or suffix"),
        ("dateutil", None, None),  # too short a remainder is not matched by prefix games
        ("jeiiyfish", "jellyfish", "look-alike characters"),
        ("co1orama", "colorama", "look-alike characters"),
        ("typing-extension", "typing-extensions", "one letter different"),
        ("typing-extnesions", "typing-extensions", "one letter different"),
        ("tyqing-extensjons", "typing-extensions", "two letters different"),
        ("install-requests", "requests", "a popular name with an install/update word"),
        ("numpyinstaller", "numpy", "a popular name with an install/update word"),
        ("colorama-update", "colorama", "a popular name with an install/update word"),
        ("numpy-requests", "requests", "two popular names joined"),
        ("flask-numpy-extras", None, None),  # two popular names and a word of its own
        ("install-tox", None, None),  # too short a name to join a word to
        ("fast-requests", None, None),  # "fast" is a real fork's word, not a lure
        ("requests2", None, None),  # neither is a trailing digit
        # Real, legitimate neighbours that must not be flagged.
        ("requests", None, None),  # itself
        ("pyqt5", None, None),  # digits only
        ("nox", None, None),  # too short for a one-letter edit
        ("furo", None, None),
        ("boto", None, None),
        ("mypy-boto3-drs", None, None),  # one short part of a family name
        ("django", None, None),
    ],
)
def test_resemblance(name: str, popular: str | None, how: str | None) -> None:
    found = POPULAR.resemblance(name)
    if popular is None:
        assert found is None, found
    else:
        assert found is not None
        assert (found.popular, found.how) == (popular, how)


def test_only_the_most_popular_names_joined_are_flagged() -> None:
    names = PopularNames([f"filler{i:03d}" for i in range(98)] + ["numpy", "pandas", "pytest"])
    assert names.rank["pandas"] == 100 and names.rank["pytest"] == 101
    found = names.resemblance("pandas-numpy")
    assert found is not None and (found.popular, found.how) == ("numpy", "two popular names joined")
    assert names.resemblance("pytest-numpy") is None


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("abc", "abc", 0), ("abc", "acb", 1), ("abc", "abcd", 1), ("abc", "xyz", 3), ("ab", "ba", 1)],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b, limit=2) == min(distance, 3)


def test_shipped_list_is_ranked_and_knows_the_popular_names() -> None:
    shipped = load_popular_names()
    assert len(shipped) > 4000
    assert shipped.rank["boto3"] < shipped.rank["flask"] < shipped.rank["jellyfish"]
    assert shipped.resemblance("reqeusts") is not None
    assert shipped.resemblance("requests") is None


def test_user_list_replaces_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "top.tsv"
    path.write_text("rank\tname\n1\tacme-core\n")
    names = load_popular_names(path)
    assert len(names) == 1
    found = names.resemblance("acme-kore")
    assert found is not None and found.popular == "acme-core"


RESEMBLES = POPULAR.resemblance("reqeusts")


@pytest.mark.parametrize(
    ("facts", "action", "rule"),
    [
        (
            ProjectFacts(datetime.datetime(2026, 10, 20, tzinfo=UTC), 9),
            "refuse",
            "typosquat-young-or-tiny",
        ),
        (ProjectFacts(None, 9), "refuse", "typosquat-young-or-tiny"),  # first upload unknown
        (
            ProjectFacts(datetime.datetime(2019, 1, 1, tzinfo=UTC), 1),
            "refuse",
            "typosquat-young-or-tiny",
        ),
        (ProjectFacts(datetime.datetime(2019, 1, 1, tzinfo=UTC), 12), "warn", "typosquat"),
    ],
)
def test_judge(facts: ProjectFacts, action: str, rule: str) -> None:
    assert RESEMBLES is not None
    finding = judge(RESEMBLES, facts, TyposquatPolicy(), NOW)
    assert (finding.action, finding.rule) == (action, rule)
    assert "did you mean 'requests'" in finding.message
    assert finding.hint


def _dry_run(server: IndexServer, *args: str) -> int:
    return main(
        ["install", "--dry-run", "--python", sys.executable, "-i", server.simple_url, *args]
    )


def _recent() -> datetime.datetime:
    return datetime.datetime.now(UTC) - datetime.timedelta(days=2)


def test_young_lookalike_is_refused(
    index: Index, server: IndexServer, capsys: pytest.CaptureFixture[str]
) -> None:
    index.wheel("reqeusts", "1.0", upload_time=_recent())
    assert _dry_run(server, "reqeusts") == 3
    err = capsys.readouterr().err
    assert "did you mean 'requests'" in err and "typosquat" in err


def test_established_lookalike_is_warned_and_allowed_names_pass(
    index: Index, server: IndexServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for version in ("1.0", "1.1", "1.2", "2.0"):
        index.wheel("reqeusts", version, upload_time=datetime.datetime(2020, 1, 1, tzinfo=UTC))
    assert _dry_run(server, "reqeusts") == 0
    captured = capsys.readouterr()
    assert "did you mean 'requests'" in captured.err
    assert "Would install reqeusts-2.0" in captured.out

    index.wheel("reqeusts", "2.1", upload_time=_recent())
    policy = tmp_path / "policy.toml"
    policy.write_text('[typosquat]\nallow = ["reqeusts"]\n')
    assert _dry_run(server, "--policy", str(policy), "reqeusts") == 0
    captured = capsys.readouterr()
    assert "did you mean" not in captured.err
    assert "Would install reqeusts-2.1" in captured.out


def _pin(name: str, index_url: str, upload: datetime.datetime | None) -> Pin:
    link = FileLink(
        filename=f"{name}-1.0-py3-none-any.whl",
        url=f"{index_url}/{name}-1.0-py3-none-any.whl",
        index_url=index_url,
        upload_time=upload,
    )
    return Pin(name=canonicalize_name(name), version=Version("1.0"), source=link)


@pytest.mark.parametrize(
    ("source", "installed", "expected"),
    [
        (IndexSource(url="https://mirror.example/simple", public=True), False, "refuse"),
        (IndexSource(url="https://mirror.example/simple", name="corp", internal=True), False, None),
        (IndexSource(url="https://mirror.example/simple"), True, None),  # already installed
        (IndexSource(url="/srv/wheels", kind="find-links"), False, None),  # a local directory
        (IndexSource(url="https://files.example/links", kind="find-links"), False, "refuse"),
    ],
)
def test_which_projects_the_gate_checks(
    source: IndexSource, installed: bool, expected: str | None
) -> None:
    pin = _pin("reqeusts", source.url, NOW)
    assert isinstance(pin.source, FileLink)
    page = ProjectPage(name=pin.name, index_url=source.url, files=(pin.source,))
    settings = Settings(
        command="install", requirements=(), constraints=(), sources=(source,), net=NetSettings()
    )
    dist = InstalledDist(name=pin.name, version=Version("0.9"), requires=())
    found = typosquat_findings(
        settings,
        Plan(pins=(pin,)),
        lambda name: [page],
        {pin.name: dist} if installed else {},
        NOW,
    )
    assert [f.action for f in found] == ([expected] if expected else [])


def test_lock_gates_names_new_to_the_lock(
    index: Index,
    server: IndexServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    index.wheel("reqeusts", "1.0", upload_time=_recent())
    lock = tmp_path / "requirements.txt"
    args = ["lock", "--python", sys.executable, "-i", server.simple_url, "-o", str(lock)]
    assert main([*args, "reqeusts"]) == 3
    assert "did you mean 'requests'" in capsys.readouterr().err
    assert not lock.exists()
    # A name the lock being updated already pins is not new: the user took it before.
    lock.write_text("reqeusts==1.0\n")
    assert main([*args, "reqeusts"]) == 0, capsys.readouterr().err
    assert "reqeusts==1.0" in lock.read_text()


def test_known_names_include_lock_pins(tmp_path: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("Reqeusts==1.0 \\\n    --hash=sha256:00\n")
    pylock = tmp_path / "pylock.toml"
    pylock.write_text(
        'lock-version = "1.0"\ncreated-by = "t"\n[[packages]]\nname = "numoy"\nversion = "2.0"\n'
        '[[packages.wheels]]\nname = "numoy-2.0-py3-none-any.whl"\n'
        'url = "https://files.example/numoy-2.0-py3-none-any.whl"\n'
        f'hashes = {{sha256 = "{"0" * 64}"}}\n'
    )
    names = known_names({canonicalize_name("six")}, [str(reqs), str(pylock), str(tmp_path / "x")])
    assert names == {"six", "reqeusts", "numoy"}
