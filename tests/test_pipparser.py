"""``pip install``'s parser rebuilt without pip's command module is pip's own: option for
option, default for default, help text and parse results (configuration applied) alike."""

from __future__ import annotations

import copy
import optparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pip import __version__ as pip_version
from pip._internal.commands import create_command

from safepip import pipparser
from safepip.pipparser import CHECKED_PIP_VERSIONS, command_parser


def _pips(isolated: bool = False) -> optparse.OptionParser:
    parser: optparse.OptionParser = create_command("install", isolated=isolated).parser
    return parser


def _ours(isolated: bool = False) -> optparse.OptionParser:
    return pipparser._install_parser(isolated)


def _parse(parser: optparse.OptionParser, argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    # pip's callbacks append to default lists its option factories share: parse on copies.
    parser.defaults = copy.deepcopy(parser.defaults)
    options, positional = parser.parse_args(list(argv))
    return vars(options), positional


def _options(parser: optparse.OptionParser) -> list[tuple[str, dict[str, Any]]]:
    """Every option with every attribute but its container, grouped and in order."""
    groups = [("", parser.option_list)] + [(g.title, g.option_list) for g in parser.option_groups]
    return [
        (title, {k: v for k, v in vars(option).items() if k != "container"})
        for title, options in groups
        for option in options
    ]


def _attributes(parser: optparse.OptionParser) -> dict[str, Any]:
    skip = {"option_groups", "option_list", "_short_opt", "_long_opt", "formatter", "config"}
    return {
        "class": type(parser),
        "formatter": type(parser.formatter),
        "isolated": parser.config.isolated,  # type: ignore[attr-defined]
        **{k: v for k, v in vars(parser).items() if k not in skip},
    }


def test_the_installed_pip_is_one_the_rebuilt_parser_was_checked_against() -> None:
    assert pip_version in CHECKED_PIP_VERSIONS
    assert pipparser.same_as_pip()


@pytest.mark.parametrize("isolated", [False, True])
def test_options_defaults_and_parser_settings_are_pips(isolated: bool) -> None:
    pips, ours = _pips(isolated), _ours(isolated)
    assert _options(ours) == _options(pips)
    assert ours.defaults == pips.defaults
    assert _attributes(ours) == _attributes(pips)
    assert sorted(ours._long_opt) == sorted(pips._long_opt)
    assert sorted(ours._short_opt) == sorted(pips._short_opt)


def test_help_text_is_pips() -> None:
    assert _ours().format_help() == _pips().format_help()


ARGVS = [
    ["-q", "--python", "/x/bin/python", "--index-url", "http://127.0.0.1:1/simple/", "-r", "a"],
    ["-vv", "--no-deps", "--only-binary=:all:", "--no-binary", "b", "--pre", "c", "d>1"],
    ["--user", "--upgrade", "--upgrade-strategy", "eager", "-c", "x", "-e", ".", "--report", "-"],
    ["--target", "t", "--platform", "p1", "--platform", "p2", "--python-version", "3.9"],
    ["--no-compile", "--no-warn-conflicts", "--prefer-bin", "--require-hashes", "--group", "g"],
    ["--config-settings", "k=v", "-C", "k=w", "--uploaded-prior-to", "2024-01-01T00:00:00Z"],
]


@pytest.mark.parametrize("argv", ARGVS)
def test_parses_as_pip_does(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pip.conf"
    config.write_text("[global]\ntimeout = 7\n[install]\nno-compile = true\nsrc = s\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_RETRIES", "9")
    assert _parse(_ours(), argv) == _parse(_pips(), argv)


def test_another_pip_gets_pips_own_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipparser, "CHECKED_PIP_VERSIONS", frozenset({"0.0"}))
    built: list[str] = []
    real = pipparser._install_parser
    monkeypatch.setattr(pipparser, "_install_parser", lambda i: built.append("ours") or real(i))
    assert _options(command_parser("install")) == _options(_pips())
    assert built == []


@pytest.mark.parametrize("command", ["download", "wheel", "lock"])
def test_other_commands_are_pips_own(command: str) -> None:
    assert _options(command_parser(command)) == _options(create_command(command).parser)


def test_parsing_an_install_imports_no_pip_command_module() -> None:
    code = (
        "import sys\n"
        "from safepip.config import parse_pipeline_args\n"
        "parse_pipeline_args('install', ['--no-deps', 'a'], {})\n"
        "print(sorted(m for m in sys.modules if m.startswith('pip._internal.commands.')))\n"
        "print('pip._internal.cli.base_command' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split("\n")[:2] == ["[]", "False"]
