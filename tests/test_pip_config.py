"""pip's configuration (pip.conf files, PIP_* variables) and requirement-file syntax mean to
safepip exactly what they mean to pip."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from safepip.config import parse_pipeline_args
from safepip.errors import RequirementsError, UsageError
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer

MIRROR = "https://mirror.invalid/simple/"


def _urls(settings: object) -> list[tuple[str, str]]:
    return [(s.url, s.kind) for s in settings.sources]  # type: ignore[attr-defined]


def test_config_file_and_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nindex-url = {MIRROR}\ntimeout = 7\n"
        "[install]\nno-deps = true\npre = yes\nonly-binary = :all:\n"
        "[download]\nno-deps = false\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    s = parse_pipeline_args("install", ["a"])
    assert _urls(s) == [(MIRROR, "index")]
    assert s.net.timeout == 7.0 and s.no_deps and s.pre and ":all:" in s.only_binary
    d = parse_pipeline_args("download", ["a"])
    assert not d.no_deps and not d.pre  # [install] does not apply to download
    # The command line wins over the file.
    assert parse_pipeline_args("install", ["--timeout", "3", "a"]).net.timeout == 3.0


def test_user_config_file(isolate: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIP_CONFIG_FILE")
    user_conf = isolate / ".config" / "pip" / "pip.conf"
    user_conf.parent.mkdir(parents=True)
    user_conf.write_text(f"[global]\nindex-url = {MIRROR}\n[install]\nprefer-binary = true\n")
    s = parse_pipeline_args("install", ["a"])
    assert (MIRROR, "index") in _urls(s) and s.prefer_binary


def test_pip_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", MIRROR)
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://a.invalid/simple/ https://b.invalid/simple/")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_NO_DEPS", "1")
    monkeypatch.setenv("PIP_UPGRADE_STRATEGY", "eager")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "9")
    monkeypatch.setenv("PIP_RETRIES", "1")
    monkeypatch.setenv("PIP_CERT", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_ROOT_USER_ACTION", "ignore")
    s = parse_pipeline_args("install", ["a"])
    assert _urls(s) == [
        (MIRROR, "index"),
        ("https://a.invalid/simple/", "index"),
        ("https://b.invalid/simple/", "index"),
        (str(links), "find-links"),
    ]
    assert s.no_deps and s.upgrade_strategy == "eager" and s.root_user_action == "ignore"
    assert s.net.timeout == 9.0 and s.net.retries == 1 and s.net.cert == str(tmp_path / "ca.pem")
    assert s.cache_dir is None
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    assert _urls(parse_pipeline_args("install", ["a"])) == [(str(links), "find-links")]


def test_bad_config_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_TIMEOUT", "soon")
    with pytest.raises(UsageError):
        parse_pipeline_args("install", ["a"])


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_requirement_file_syntax(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRA_URL", "https://extra.invalid/simple/")
    links = tmp_path / "links"
    links.mkdir()
    _write(tmp_path / "sub" / "constraints.txt", "# pins\nlib<3  # inline comment\n")
    _write(tmp_path / "sub" / "more.txt", "-c constraints.txt\nleaf ; python_version >= '3'\n")
    top = _write(
        tmp_path / "requirements.txt",
        "# a comment line\n"
        "--extra-index-url ${EXTRA_URL}\n"
        f"--find-links {links}\n"
        "--pre\n"
        "--only-binary :all:\n"
        "app[fast,slow] >= 1.0, \\\n"
        "    < 2 ; sys_platform != 'win32'\n"
        "win-only ; sys_platform == 'win32'\n"
        f"hashed==1.0 --hash=sha256:{'a' * 64} \\\n"
        f"    --hash=sha256:{'b' * 64}\n"
        "-r sub/more.txt\n",
    )
    s = parse_pipeline_args("install", ["-r", str(top)])
    reqs = {r.name: r for r in s.requirements}
    assert list(reqs) == ["app", "win-only", "hashed", "leaf"]
    assert reqs["app"].requirement.extras == {"fast", "slow"}
    assert str(reqs["app"].requirement.specifier) == "<2,>=1.0"
    assert str(reqs["win-only"].requirement.marker) == 'sys_platform == "win32"'
    assert reqs["hashed"].hashes.allowed("sha256") == {"a" * 64, "b" * 64}
    assert "requirements.txt" in reqs["app"].comes_from
    assert "more.txt" in reqs["leaf"].comes_from
    assert [str(c.requirement) for c in s.constraints] == ["lib<3"]
    assert ("https://extra.invalid/simple/", "index") in _urls(s)
    assert (str(links), "find-links") in _urls(s)
    assert s.pre and ":all:" in s.only_binary and s.require_hashes


def test_index_url_in_a_file_replaces_the_command_lines(tmp_path: Path) -> None:
    """As in pip: a file's --index-url replaces every index given before it; no other index is
    asked for its names."""
    reqs = _write(tmp_path / "r.txt", "--index-url https://in-file.invalid/simple/\na\n")
    s = parse_pipeline_args(
        "install", ["-i", MIRROR, "--extra-index-url", "https://x.invalid/", "-r", str(reqs)]
    )
    assert _urls(s) == [("https://in-file.invalid/simple/", "index")]
    reqs.write_text("--no-index\na\n")
    assert _urls(parse_pipeline_args("install", ["-i", MIRROR, "-r", str(reqs)])) == []


@pytest.mark.parametrize(
    ("line", "name", "kind", "editable"),
    [
        ("app @ https://files.invalid/app-1.0-py3-none-any.whl", "app", "wheel", False),
        ("https://files.invalid/app-1.0.tar.gz", "app", "archive", False),
        ("-e ./local/project", "local-project", "directory", True),
        ("./local/project", "local-project", "directory", False),
    ],
)
def test_direct_references_in_files_read_with_pips_meaning(
    line: str, name: str, kind: str, editable: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths are taken from the current directory, as pip takes them."""
    project = tmp_path / "local" / "project"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "local-project"\nversion = "1"\n')
    monkeypatch.chdir(tmp_path)
    reqs = _write(tmp_path / "r.txt", line + "\n")
    (req,) = parse_pipeline_args("install", ["-r", str(reqs)]).requirements
    assert req.name == name and req.direct is not None
    assert req.direct.kind == kind and req.direct.editable is editable
    assert "r.txt" in req.comes_from


def test_a_path_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    reqs = _write(tmp_path / "r.txt", "./no/such/project-1.0-py3-none-any.whl\n")
    with pytest.raises(UsageError) as info:
        parse_pipeline_args("install", ["-r", str(reqs)])
    assert "r.txt" in info.value.message and info.value.hint


def test_broken_requirement_files(tmp_path: Path) -> None:
    with pytest.raises(RequirementsError, match=r"missing\.txt"):
        parse_pipeline_args("install", ["-r", str(tmp_path / "missing.txt")])
    bad = _write(tmp_path / "bad.txt", "ok-name\nnot a valid ==requirement\n")
    with pytest.raises(RequirementsError) as info:
        parse_pipeline_args("install", ["-r", str(bad)])
    assert "bad.txt" in info.value.message and "line 2" in info.value.message
    bad.write_text("--no-such-option\n")
    with pytest.raises(UsageError):
        parse_pipeline_args("install", ["-r", str(bad)])


def _freeze_and_requested(python: Path) -> tuple[list[str], list[str]]:
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.split()
    inspect = json.loads(
        subprocess.run(
            [str(python), "-m", "pip", "inspect"], capture_output=True, text=True, check=True
        ).stdout
    )
    requested = sorted(i["metadata"]["name"] for i in inspect["installed"] if i.get("requested"))
    return sorted(freeze), requested


def test_requirement_file_installs_as_pip_would(
    index: Index, server: IndexServer, tmp_path: Path, target_venv: Path, plain_venv: Path
) -> None:
    """Nested -r/-c, ${VAR}, markers, extras and in-file options: the same result as pip's."""
    index.wheel("app", "1.0", requires=["lib", "opt; extra == 'fast'"], extras=["fast"])
    index.wheel("app", "2.0", requires=["lib"])
    index.wheel("lib", "1.0")
    index.wheel("lib", "2.0")
    index.wheel("opt", "1.0")
    index.wheel("ztool", "1.0")
    _write(tmp_path / "req" / "constraints.txt", "lib<2\n")
    _write(tmp_path / "req" / "tools.txt", "-c constraints.txt\nztool ; python_version >= '3'\n")
    top = _write(
        tmp_path / "req" / "requirements.txt",
        "# everything\n--index-url ${INDEX_URL}\napp[fast] \\\n  < 2\n-r tools.txt\n",
    )
    env = {**os.environ, "INDEX_URL": server.simple_url}
    r = run_safepip("install", "--python", str(target_venv / "bin/python"), "-r", str(top), env=env)
    assert r.returncode == 0, r.stderr
    subprocess.run(
        [str(plain_venv / "bin/python"), "-m", "pip", "install", "-q", "-r", str(top)],
        check=True,
        env=env,
    )
    ours = _freeze_and_requested(target_venv / "bin/python")
    assert ours[0] == sorted(["app==1.0", "lib==1.0", "opt==1.0", "ztool==1.0"])
    assert ours == _freeze_and_requested(plain_venv / "bin/python")
    assert [n for n in ours[1] if n != "pip"] == ["app", "ztool"]
