"""The project-status gate: yanked files and PEP 792 project status."""

from __future__ import annotations

import sys

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from safepip.cli import main
from safepip.models import FileLink, Pin, ProjectPage
from safepip.status import project_status_finding, yank_finding
from tests.kit import Index, IndexServer

LINK = FileLink(
    filename="acme-1.0-py3-none-any.whl", url="https://x/acme.whl", index_url="https://x/"
)
PIN = Pin(name=canonicalize_name("acme"), version=Version("1.0"), source=LINK)


@pytest.mark.parametrize(
    ("status", "reason", "action", "rule"),
    [
        (None, None, None, None),
        ("active", None, None, None),
        ("quarantined", "malware report", "refuse", "project-quarantined"),
        ("archived", None, "warn", "project-archived"),
        ("deprecated", "use acme2", "warn", "project-deprecated"),
        ("frobbed", None, "report", "project-status-unknown"),
    ],
)
def test_project_status(
    status: str | None, reason: str | None, action: str | None, rule: str | None
) -> None:
    page = ProjectPage(
        name=PIN.name, index_url="https://x/", files=(LINK,), status=status, status_reason=reason
    )
    finding = project_status_finding(PIN, page)
    if action is None:
        assert finding is None
    else:
        assert finding is not None
        assert (finding.action, finding.rule) == (action, rule)
        if reason:
            assert reason in finding.message


@pytest.mark.parametrize(
    ("yanked", "reason", "expected"),
    [(False, None, None), (True, None, "no reason given"), (True, "broken build", "broken build")],
)
def test_yanked(yanked: bool, reason: str | None, expected: str | None) -> None:
    link = FileLink(
        filename=LINK.filename,
        url=LINK.url,
        index_url=LINK.index_url,
        yanked=yanked,
        yank_reason=reason,
    )
    finding = yank_finding(Pin(name=PIN.name, version=PIN.version, source=link))
    if expected is None:
        assert finding is None
    else:
        assert finding is not None and finding.action == "warn" and expected in finding.message


def _dry_run(server: IndexServer, *args: str) -> int:
    return main(
        ["install", "--dry-run", "--python", sys.executable, "-i", server.simple_url, *args]
    )


def test_quarantined_refused_archived_warned(
    index: Index, server: IndexServer, capsys: pytest.CaptureFixture[str]
) -> None:
    index.wheel("bad-thing", "1.0")
    index.wheel("old-thing", "1.0")
    index.project_status["bad-thing"] = ("quarantined", "reported as malware")
    index.project_status["old-thing"] = ("archived", None)
    assert _dry_run(server, "bad-thing") == 3
    assert "quarantined bad-thing: reported as malware" in capsys.readouterr().err
    assert _dry_run(server, "old-thing") == 0
    captured = capsys.readouterr()
    assert "marks old-thing archived" in captured.err
    assert "Would install old-thing-1.0" in captured.out


def test_yanked_only_for_exact_pins_with_warning(
    index: Index, server: IndexServer, capsys: pytest.CaptureFixture[str]
) -> None:
    index.wheel("leafy", "0.1")
    index.wheel("leafy", "0.2", yanked="broken metadata")
    assert _dry_run(server, "leafy") == 0
    captured = capsys.readouterr()
    assert "Would install leafy-0.1" in captured.out and "yanked" not in captured.err
    assert _dry_run(server, "leafy==0.2") == 0
    captured = capsys.readouterr()
    assert "Would install leafy-0.2" in captured.out
    assert "leafy==0.2 is yanked (broken metadata)" in captured.err
