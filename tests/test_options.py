"""The option table, row by row: every option pip's parser lists is honoured (it changes what
safepip does, as pip's help says) or refused with its reason. Parse-only: no venv per row."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from safepip.cli import main
from safepip.config import Settings, parse_pipeline_args
from safepip.errors import ExitStatus, PolicyRefusal, UsageError
from safepip.options import DISPOSITIONS, Honoured, OptionRow, Refused, option_rows

COMMANDS = ("install", "download", "wheel")

# A value for each option that takes one (files named here are made by the `workdir` fixture).
VALUES = {
    "--requirement": "req.txt",
    "--constraint": "con.txt",
    "--build-constraint": "con.txt",
    "--requirements-from-script": "script.py",
    "--editable": ".",
    "--target": "tgt",
    "--platform": "manylinux2014_x86_64",
    "--python-version": "3.11",
    "--implementation": "cp",
    "--abi": "cp311",
    "--root": "rootdir",
    "--prefix": "prefixdir",
    "--src": "srcdir",
    "--upgrade-strategy": "eager",
    "--config-settings": "key=value",
    "--progress-bar": "off",
    "--root-user-action": "ignore",
    "--report": "out.json",
    "--group": "dev",
    "--all-releases": "a",
    "--only-final": "a",
    "--no-binary": "a",
    "--only-binary": ":all:",
    "--index-url": "https://mirror.invalid/simple/",
    "--extra-index-url": "https://mirror.invalid/extra/",
    "--refresh-package": "a",
    "--find-links": "links",
    "--uploaded-prior-to": "2024-01-01T00:00:00Z",
    "--python": sys.executable,
    "--log": "pip.log",
    "--keyring-provider": "subprocess",
    "--proxy": "http://127.0.0.1:9",
    "--retries": "2",
    "--timeout": "3",
    "--exists-action": "i",
    "--trusted-host": "mirror.invalid",
    "--cert": "ca.pem",
    "--client-cert": "client.pem",
    "--cache-dir": "cachedir",
    "--use-feature": "truststore",
    "--use-deprecated": "legacy-certs",
    "--resume-retries": "2",
    "--dest": "out",
    "--wheel-dir": "out",
}

# Options whose effect shows only against another setting (they undo it).
BASELINES = {
    "--no-user": ["--user"],
    "--compile": ["--no-compile"],
    "--no-require-hashes": ["-r", "hashed.txt"],
}


def _rows() -> list[tuple[str, OptionRow]]:
    return [(cmd, row) for cmd in COMMANDS for row in option_rows(cmd)]


def _example(row: OptionRow) -> list[str]:
    if row.takes_value:
        return [row.name, VALUES[row.name]]
    return [row.name]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding the files the examples name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "req.txt").write_text("a==1.0\n")
    (tmp_path / "con.txt").write_text("b<2\n")
    (tmp_path / "hashed.txt").write_text(f"a==1.0 --hash=sha256:{'0' * 64}\n")
    (tmp_path / "script.py").write_text("# /// script\n# dependencies = ['a']\n# ///\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "workdir-project"\nversion = "1"\n[dependency-groups]\ndev = ["a>=1"]\n'
    )
    (tmp_path / "links").mkdir()
    return tmp_path


def _parse(command: str, args: list[str]) -> Settings:
    return parse_pipeline_args(command, args)


def test_every_pip_option_has_a_row() -> None:
    """The table is pip's own list; a row missing from DISPOSITIONS would be refused as unknown."""
    for command in COMMANDS:
        names = {row.name for row in option_rows(command)}
        assert names <= set(DISPOSITIONS), sorted(names - set(DISPOSITIONS))
    assert "--target" in {r.name for r in option_rows("install")}


@pytest.mark.parametrize(("command", "row"), _rows(), ids=lambda v: getattr(v, "name", v))
def test_option_row(command: str, row: OptionRow, workdir: Path) -> None:
    d = row.disposition
    if row.name == "--help":
        assert main([command, "--help"]) == ExitStatus.OK
        return
    args = _example(row)
    if isinstance(d, Refused):
        with pytest.raises(UsageError) as info:
            _parse(command, args)
        assert info.value.exit_status == ExitStatus.USAGE
        assert row.name in info.value.message and d.reason in info.value.message
        return
    assert isinstance(d, Honoured)
    baseline = BASELINES.get(row.name, [])
    settings = _parse(command, [*baseline, *args])
    if not d.effect:
        assert d.note, f"{row.name} changes nothing: its row must say why that is pip's meaning"
        return
    before = _parse(command, baseline)
    assert getattr(settings, d.effect) != getattr(before, d.effect), (
        f"{row.name} did not change Settings.{d.effect}"
    )


def test_effects_name_settings_fields() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    for name, d in DISPOSITIONS.items():
        if isinstance(d, Honoured) and d.effect:
            assert d.effect in fields, name


def test_unknown_option_is_a_usage_error_naming_it(workdir: Path) -> None:
    with pytest.raises(UsageError) as info:
        _parse("install", ["--no-such-option", "a"])
    assert "--no-such-option" in info.value.message


def test_refused_option_from_configuration(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals apply however the option is set: PIP_* too."""
    monkeypatch.setenv("PIP_USE_FEATURE", "truststore")
    with pytest.raises(UsageError, match="--use-feature"):
        _parse("install", ["a"])


def test_isolated_ignores_pip_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_PRE", "1")
    assert _parse("install", ["a"]).pre
    assert not _parse("install", ["--isolated", "a"]).pre


def test_dockerfile_staples(workdir: Path) -> None:
    s = _parse(
        "install",
        [
            "--no-cache-dir",
            "--root-user-action",
            "ignore",
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
            "-q",
            "a",
        ],
    )
    assert s.cache_dir is None and s.root_user_action == "ignore" and s.progress_bar == "off"
    assert s.verbosity == -1 and [r.name for r in s.requirements] == ["a"]


def test_python_before_or_after_the_subcommand(workdir: Path) -> None:
    from safepip.config import split_command

    for argv in (
        ["--python", sys.executable, "install", "a"],
        ["install", "--python", sys.executable, "a"],
    ):
        command, rest = split_command(argv)
        assert command == "install"
        assert _parse("install", rest).python == sys.executable


def test_group_reads_dependency_groups(workdir: Path) -> None:
    s = _parse("install", ["--group", "dev"])
    assert [str(r.requirement) for r in s.requirements] == ["a>=1"]
    with pytest.raises(UsageError, match="nope"):
        _parse("install", ["--group", "nope"])


def test_lock_file_is_not_misread(workdir: Path) -> None:
    (workdir / "pylock.toml").write_text('lock-version = "1.0"\n')
    s = _parse("install", ["-r", "pylock.toml[x]", "--group", "pylock.toml:dev"])
    assert not s.requirements
    assert [(x.path, set(x.extras), set(x.groups)) for x in s.locks] == [
        ("pylock.toml", {"x"}, {"dev"})
    ]
    with pytest.raises(UsageError, match="pylock"):
        _parse("install", ["-c", "pylock.toml"])


def test_require_hashes_follows_hashes_unless_no_require_hashes(workdir: Path) -> None:
    assert _parse("install", ["-r", "hashed.txt"]).require_hashes
    assert not _parse("install", ["-r", "hashed.txt", "--no-require-hashes"]).require_hashes


def test_require_virtualenv_refuses_a_plain_interpreter(workdir: Path, target_venv: Path) -> None:
    from safepip.pipeline import run

    base = Path(sys.base_prefix) / "bin" / "python3"
    s = _parse("install", ["--require-virtualenv", "--python", str(base), "a"])
    with pytest.raises(PolicyRefusal, match="virtual environment"):
        run(s)
    # A virtual environment passes this check (and goes on to the index, which has nothing).
    s = _parse(
        "install",
        ["--require-virtualenv", "--python", str(target_venv), "--no-index", "-f", "links", "a"],
    )
    with pytest.raises(Exception) as info:
        run(s)
    assert "virtualenv-required" not in str(getattr(info.value, "reference", ""))
