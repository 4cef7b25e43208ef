"""Known vulnerabilities: the offline OSV database, the install gate and `safepip audit`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.version import InvalidVersion, Version

from safepip.advisories import (
    Advisory,
    Range,
    advisories_from_doc,
    compact_from_zip,
    cvss3_score,
    load_database,
)
from safepip.cli import main
from safepip.vulnerabilities import VulnerabilityPolicy, decide
from tests.conftest import REPO
from tests.kit import Index, IndexServer, make_wheel

SNAPSHOT = next(
    (
        d / "shared" / "data" / "osv-pypi-advisories.zip"
        for d in (REPO.parent, REPO.parent.parent)
        if (d / "shared" / "data" / "osv-pypi-advisories.zip").is_file()
    ),
    Path("missing"),
)
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        (CRITICAL, 9.8),
        (MEDIUM, 6.1),
        ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("CVSS:3.1/AV:N", None),
    ],
)
def test_cvss3_score(vector: str, score: float | None) -> None:
    assert cvss3_score(vector) == score


ADVISORY = Advisory(
    id="TEST-1",
    aliases=("CVE-0000-1",),
    summary="",
    severity="high",
    score=7.5,
    ranges=(Range("1.0", "1.4"), Range("2.0", None, "2.1"), Range("3.0")),
    versions=("0.9",),
)


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("0.8", False),
        ("0.9", True),  # listed explicitly
        ("1.0", True),
        ("1.3.9", True),
        ("1.4", False),  # fixed
        ("2.1", True),  # last affected
        ("2.1.1", False),
        ("3.5", True),  # open range
    ],
)
def test_affects(version: str, affected: bool) -> None:
    assert ADVISORY.affects(Version(version)) is affected


def _with(**changes: Any) -> Advisory:
    fields = {f: getattr(ADVISORY, f) for f in Advisory.__slots__}
    fields.update(changes)
    return Advisory(**fields)


@pytest.mark.parametrize(
    ("advisory", "policy", "action"),
    [
        (ADVISORY, VulnerabilityPolicy(), "warn"),  # the default: warn and report
        (ADVISORY, VulnerabilityPolicy(block_severity="high"), "refuse"),
        (ADVISORY, VulnerabilityPolicy(block_severity="critical"), "warn"),
        (_with(severity=None), VulnerabilityPolicy(block_severity="low"), "warn"),
        (
            _with(severity=None),
            VulnerabilityPolicy(block_severity="low", block_unknown_severity=True),
            "refuse",
        ),
        (
            ADVISORY,
            VulnerabilityPolicy(block_severity="low", ignore=frozenset({"CVE-0000-1"})),
            None,
        ),
        (ADVISORY, VulnerabilityPolicy(require_fix=True), "refuse"),
        (_with(ranges=(Range("0"),)), VulnerabilityPolicy(require_fix=True), "warn"),
    ],
)
def test_decide(advisory: Advisory, policy: VulnerabilityPolicy, action: str | None) -> None:
    assert decide(advisory, policy) == action


def osv_zip(path: Path, docs: list[dict[str, Any]]) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for doc in docs:
            z.writestr(f"{doc['id']}.json", json.dumps(doc))
    path.write_bytes(buf.getvalue())
    return path


def osv_doc(
    ident: str, name: str, fixed: str, vector: str | None = None, introduced: str = "0"
) -> dict[str, Any]:
    return {
        "id": ident,
        "modified": "2024-05-06T00:00:00Z",
        "aliases": [f"CVE-{ident}"],
        "summary": f"{name} lets attackers in",
        **({"severity": [{"type": "CVSS_V3", "score": vector}]} if vector else {}),
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": name},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": introduced}, {"fixed": fixed}]},
                    {
                        "type": "GIT",
                        "repo": "https://example.org/r",
                        "events": [{"introduced": "0"}],
                    },
                ],
            }
        ],
    }


@pytest.fixture
def database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Two advisories, installed into safepip's (isolated) cache with `advisories update`."""
    archive = osv_zip(
        tmp_path / "all.zip",
        [
            osv_doc("TEST-2024-1", "Vuln_Lib", "1.1", CRITICAL),
            osv_doc("TEST-2024-2", "other", "5", MEDIUM),
            {**osv_doc("TEST-2024-3", "vuln-lib", "9"), "withdrawn": "2024-06-01T00:00:00Z"},
        ],
    )
    assert main(["advisories", "update", "--from", str(archive)]) == 0
    assert "3 advisories as of 2024-05-06" in capsys.readouterr().out
    return archive


def _dry_run(server: IndexServer, *args: str) -> int:
    return main(
        ["install", "--dry-run", "--python", sys.executable, "-i", server.simple_url, *args]
    )


def test_install_warns_by_default_and_policy_blocks(
    database: Path,
    index: Index,
    server: IndexServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index.wheel("vuln-lib", "1.0")
    index.wheel("vuln-lib", "1.1")
    report = tmp_path / "report.json"
    assert _dry_run(server, "--report", str(report), "vuln-lib==1.0") == 0
    captured = capsys.readouterr()
    assert (
        "vuln-lib==1.0 has a known vulnerability TEST-2024-1 (critical; fixed in 1.1"
        in captured.err
    )
    assert "advisories as of 2024-05-06" in captured.err
    assert "TEST-2024-3" not in captured.err  # withdrawn
    findings = json.loads(report.read_text())["safepip"]["findings"]
    vuln = next(f for f in findings if f["rule"] == "known-vulnerability")
    assert vuln["details"]["fixed-versions"] == "1.1" and vuln["action"] == "warn"
    db = next(f for f in findings if f["rule"] == "advisory-database")
    assert db["details"]["as-of"] == "2024-05-06"

    policy = tmp_path / "policy.toml"
    policy.write_text('[advisories]\nblock-severity = "high"\n')
    assert _dry_run(server, "--policy", str(policy), "vuln-lib==1.0") == 3
    assert "TEST-2024-1" in capsys.readouterr().err
    assert _dry_run(server, "--policy", str(policy), "vuln-lib") == 0  # 1.1 is fixed
    policy.write_text('[advisories]\nblock-severity = "high"\nignore = ["CVE-TEST-2024-1"]\n')
    assert _dry_run(server, "--policy", str(policy), "vuln-lib==1.0") == 0


def test_missing_database_is_said(
    index: Index, server: IndexServer, capsys: pytest.CaptureFixture[str]
) -> None:
    index.wheel("vuln-lib", "1.0")
    assert _dry_run(server, "vuln-lib") == 0
    assert "known vulnerabilities were not checked" in capsys.readouterr().err


def test_audit_environment_and_files(
    database: Path, target_venv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filename, data = make_wheel("vuln-lib", "1.0")
    (tmp_path / filename).write_bytes(data)
    subprocess.run(
        [
            str(target_venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            str(tmp_path / filename),
        ],
        check=True,
    )
    assert main(["audit", "--python", str(target_venv / "bin/python")]) == 3
    out = capsys.readouterr().out
    assert "TEST-2024-1" in out and "vuln-lib" in out and "1.1" in out

    reqs = tmp_path / "requirements.txt"
    reqs.write_text("vuln-lib==1.1 \\\n    --hash=sha256:00\nother==4.0  # comment\n")
    assert main(["audit", "-r", str(reqs), "--format", "json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    vulns = {d["name"]: [v["id"] for v in d["vulns"]] for d in doc["dependencies"]}
    assert vulns == {"vuln-lib": [], "other": ["TEST-2024-2"]}
    assert doc["database"]["as_of"] == "2024-05-06"

    lock = tmp_path / "pylock.toml"
    lock.write_text('lock-version = "1.0"\n[[packages]]\nname = "other"\nversion = "5.0"\n')
    assert main(["audit", "-r", str(lock)]) == 0
    assert "No known vulnerabilities found" in capsys.readouterr().out

    reqs.write_text("other>=4\n")
    assert main(["audit", "-r", str(reqs)]) == 2
    assert "not pinned" in capsys.readouterr().err


def test_audit_without_database_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--python", sys.executable]) == 1
    assert "advisories update" in capsys.readouterr().err


def _valid(version: str) -> bool:
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


@pytest.mark.skipif(not SNAPSHOT.is_file(), reason="the shared OSV snapshot is not beside the repo")
def test_real_snapshot_loads_and_fixed_versions_are_not_affected() -> None:
    compact = compact_from_zip(SNAPSHOT.read_bytes(), str(SNAPSHOT))
    assert compact["info"]["count"] > 1000
    db = load_database(SNAPSHOT)
    assert db.info.as_of and db.info.count == compact["info"]["count"]
    checked = 0
    for advisories in db.by_name.values():
        for advisory in advisories:
            if len(advisory.ranges) != 1 or advisory.ranges[0].fixed is None:
                continue
            fixed = advisory.ranges[0].fixed
            if fixed in advisory.versions or not _valid(fixed):
                continue
            checked += 1
            assert not advisory.affects(Version(fixed)), advisory.id
    assert checked > 500


class _FakeOSV:
    """OSV's API on 127.0.0.1: querybatch and vulns/ID, recording what it was told."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        import http.server
        import threading

        self.docs = {d["id"]: d for d in docs}
        self.queries: list[dict[str, Any]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, body: object, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.queries.extend(body["queries"])
                results = []
                for q in body["queries"]:
                    ids = [
                        {"id": d["id"]}
                        for d in fake.docs.values()
                        for a in advisories_from_doc(d)
                        if a[0] == q["package"]["name"] and a[1].affects(Version(q["version"]))
                    ]
                    results.append({"vulns": ids} if ids else {})
                self._send({"results": results})

            def do_GET(self) -> None:
                ident = self.path.rsplit("/", 1)[-1]
                if ident in fake.docs:
                    self._send(fake.docs[ident])
                else:
                    self._send({"message": "not found"}, 404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_online_lookups_only_when_the_policy_opts_in(
    index: Index, server: IndexServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index.wheel("vuln-lib", "1.0")
    osv = _FakeOSV([osv_doc("ONLINE-1", "vuln-lib", "2.0", CRITICAL)])
    try:
        assert _dry_run(server, "vuln-lib") == 0
        assert osv.queries == []  # the default never asks
        assert "ONLINE-1" not in capsys.readouterr().err
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[advisories]\nonline = true\nonline-url = "{osv.url}"\n')
        assert _dry_run(server, "--policy", str(policy), "vuln-lib") == 0
        assert osv.queries == [
            {"package": {"ecosystem": "PyPI", "name": "vuln-lib"}, "version": "1.0"}
        ]
        err = capsys.readouterr().err
        assert "vuln-lib==1.0 has a known vulnerability ONLINE-1 (critical; fixed in 2.0" in err
        assert "known vulnerabilities were not checked" not in err
    finally:
        osv.close()


def test_audit_asks_osv_online_only_when_the_policy_opts_in(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    osv = _FakeOSV([osv_doc("ONLINE-1", "vuln-lib", "2.0", CRITICAL)])
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("vuln-lib==1.0\nother==5.0\n")
    try:
        assert main(["audit", "-r", str(reqs), "--format", "json"]) == 3
        doc = json.loads(capsys.readouterr().out)
        assert osv.queries == [] and len(doc["databases"]) == 1  # the default never asks
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[advisories]\nonline = true\nonline-url = "{osv.url}"\n')
        assert main(["audit", "-r", str(reqs), "--policy", str(policy), "--format", "json"]) == 3
        doc = json.loads(capsys.readouterr().out)
        assert osv.queries == [
            {"package": {"ecosystem": "PyPI", "name": "other"}, "version": "5.0"},
            {"package": {"ecosystem": "PyPI", "name": "vuln-lib"}, "version": "1.0"},
        ]
        vulns = {d["name"]: [v["id"] for v in d["vulns"]] for d in doc["dependencies"]}
        assert vulns == {"other": [], "vuln-lib": ["TEST-2024-1", "ONLINE-1"]}
        assert [d["source"] for d in doc["databases"]] == [str(database), osv.url]
        online = next(v for v in doc["dependencies"][1]["vulns"] if v["id"] == "ONLINE-1")
        assert online["fix_versions"] == ["2.0"] and online["severity"] == "critical"
    finally:
        osv.close()


def test_audit_online_without_an_offline_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    osv = _FakeOSV([osv_doc("ONLINE-1", "vuln-lib", "2.0", CRITICAL)])
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("vuln-lib==2.0\n")
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[advisories]\nonline = true\nonline-url = "{osv.url}"\n')
    try:
        assert main(["audit", "-r", str(reqs), "--policy", str(policy)]) == 0  # 2.0 is fixed
        out = capsys.readouterr().out
        assert "against 0 advisories" in out and "No known vulnerabilities found" in out
        reqs.write_text("vuln-lib==1.0\n")
        assert main(["audit", "-r", str(reqs), "--policy", str(policy)]) == 3
        assert "ONLINE-1" in capsys.readouterr().out
    finally:
        osv.close()
    assert main(["audit", "-r", str(reqs), "--policy", str(policy)]) == 1  # the API is gone
    assert "cannot reach the OSV API" in capsys.readouterr().err
