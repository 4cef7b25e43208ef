"""The option table: every option pip's own parser lists for install, download and wheel, each
honoured with pip's meaning or refused with its reason."""

from __future__ import annotations

import optparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from safepip.errors import UsageError

__all__ = [
    "DISPOSITIONS",
    "Honoured",
    "OptionRow",
    "Refused",
    "option_rows",
    "refuse_given_options",
    "render_table",
]


@dataclass(frozen=True, slots=True)
class Honoured:
    """safepip gives the option pip's meaning.

    ``effect`` names the :class:`~safepip.config.Settings` field the option sets, or is empty when
    the option changes nothing safepip does (``note`` says why that is pip's meaning too)."""

    effect: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Refused:
    """safepip refuses the option (exit 2) when it is given, for ``reason``."""

    reason: str


Disposition = Honoured | Refused

_NO_BUILDS = "safepip runs no build outside a sandbox, so there is nothing for it to change"

# Keyed by pip's long option name. A pip option missing here is refused when given (fail closed:
# a newer pip's option is never silently ignored).
DISPOSITIONS: Mapping[str, Disposition] = {
    # Install Options
    "--requirement": Honoured("requirements"),
    "--constraint": Honoured("constraints"),
    "--build-constraint": Honoured("build_constraints"),
    "--requirements-from-script": Refused(
        "PEP 723 scripts are not supported yet; list the script's dependencies in a requirements file"
    ),
    "--no-deps": Honoured("no_deps"),
    "--only-deps": Refused(
        "--only-deps is not supported yet; list the dependencies in a requirements file"
    ),
    "--editable": Honoured("requirements"),
    "--dry-run": Honoured("dry_run"),
    "--target": Honoured("target_dir"),
    "--platform": Honoured("platforms"),
    "--python-version": Honoured("python_version"),
    "--implementation": Honoured("implementation"),
    "--abi": Honoured("abis"),
    "--user": Honoured("user"),
    "--no-user": Honoured("user"),
    "--root": Honoured("root"),
    "--prefix": Honoured("prefix"),
    "--src": Honoured("src_dir"),
    "--upgrade": Honoured("upgrade"),
    "--upgrade-strategy": Honoured("upgrade_strategy"),
    "--force-reinstall": Honoured("force_reinstall"),
    "--ignore-installed": Honoured("ignore_installed"),
    "--ignore-requires-python": Honoured("ignore_requires_python"),
    "--no-build-isolation": Refused(
        "a build that sees the target environment is never run; builds are always isolated"
    ),
    "--use-pep517": Honoured(note="always on in pip too"),
    "--check-build-dependencies": Honoured(note=_NO_BUILDS),
    "--break-system-packages": Honoured("break_system_packages"),
    "--config-settings": Refused(
        "build backend settings would change what is built, and safepip builds nothing unsandboxed"
    ),
    "--compile": Honoured("compile"),
    "--no-compile": Honoured("compile"),
    "--no-warn-script-location": Honoured("no_warn_script_location"),
    "--no-warn-conflicts": Honoured("no_warn_conflicts"),
    "--require-hashes": Honoured("require_hashes"),
    "--no-require-hashes": Honoured("require_hashes"),
    "--progress-bar": Honoured("progress_bar"),
    "--root-user-action": Honoured("root_user_action"),
    "--report": Honoured("report"),
    "--group": Honoured("requirements"),
    "--no-clean": Honoured(note="safepip keeps no build directories to clean"),
    # Package Selection Options
    "--pre": Honoured("pre"),
    "--all-releases": Honoured("prerelease_names"),
    "--only-final": Honoured("final_only_names"),
    "--no-binary": Honoured("no_binary"),
    "--only-binary": Honoured("only_binary"),
    "--prefer-binary": Honoured("prefer_binary"),
    # Package Index Options
    "--index-url": Honoured("sources"),
    "--extra-index-url": Honoured("sources"),
    "--no-index": Honoured("sources"),
    "--refresh-package": Refused(
        "--refresh-package is not supported yet; --no-cache-dir refreshes every page"
    ),
    "--find-links": Honoured("sources"),
    "--uploaded-prior-to": Honoured("uploaded_prior_to"),
    # General Options
    "--help": Honoured(note="shows pip's own option list"),
    "--debug": Honoured(note="safepip's own errors never carry tracebacks"),
    "--isolated": Honoured("isolated"),
    "--require-virtualenv": Honoured("require_virtualenv"),
    "--python": Honoured("python"),
    "--verbose": Honoured("verbosity"),
    "--quiet": Honoured("verbosity"),
    "--log": Honoured("log"),
    "--no-input": Honoured(note="safepip never prompts"),
    "--keyring-provider": Honoured("net"),
    "--proxy": Honoured("net"),
    "--no-proxy-env": Honoured("net"),
    "--retries": Honoured("net"),
    "--timeout": Honoured("net"),
    "--exists-action": Honoured("exists_action"),
    "--trusted-host": Honoured(
        "trusted_hosts",
        note="a plain-HTTP index is used only if the user's policy lists its host in "
        "allow-insecure-hosts; HTTPS is always verified",
    ),
    "--cert": Honoured("net"),
    "--client-cert": Honoured("net"),
    "--cache-dir": Honoured("cache_dir"),
    "--no-cache-dir": Honoured("cache_dir"),
    "--disable-pip-version-check": Honoured(note="safepip never checks for a newer pip"),
    "--no-color": Honoured("no_color"),
    "--no-python-version-warning": Honoured(note="a no-op in pip too"),
    "--use-feature": Refused(
        "--use-feature changes pip's behaviour in ways safepip does not verify"
    ),
    "--use-deprecated": Refused("--use-deprecated re-enables behaviour safepip does not verify"),
    "--resume-retries": Honoured(note="safepip restarts an incomplete download within --retries"),
    # download and wheel
    "--dest": Honoured("output_dir"),
    "--wheel-dir": Honoured("output_dir"),
    "--no-verify": Honoured(note="safepip builds no wheels, so there is no built wheel to verify"),
    # lock
    "--output": Honoured("output_file"),
}


@dataclass(frozen=True, slots=True)
class OptionRow:
    """One option as pip's parser lists it, with what safepip does about it."""

    name: str
    flags: tuple[str, ...]
    dest: str
    takes_value: bool
    group: str
    help: str
    disposition: Disposition


def _unknown(name: str) -> Refused:
    return Refused(f"{name} is new to safepip, which does not know what it would change")


def _pip_parser(command: str) -> optparse.OptionParser:
    from safepip.pipparser import command_parser

    return command_parser(command)


def option_rows(command: str) -> tuple[OptionRow, ...]:
    """The table for ``command``, built from pip's own parser (nothing listed by hand can drift)."""
    parser = _pip_parser(command)
    rows: list[OptionRow] = []
    groups: list[tuple[str, list[optparse.Option]]] = [("", parser.option_list)]
    groups += [(g.title, g.option_list) for g in parser.option_groups]
    for title, options in groups:
        for opt in options:
            name = opt.get_opt_string()
            rows.append(
                OptionRow(
                    name=name,
                    flags=(*opt._short_opts, *opt._long_opts),
                    dest=str(opt.dest),
                    takes_value=opt.takes_value(),
                    group=title,
                    help=" ".join(str(opt.help or "").split()),
                    disposition=DISPOSITIONS.get(name) or _unknown(name),
                )
            )
    return tuple(rows)


def _given(options: optparse.Values, defaults: optparse.Values, dest: str) -> bool:
    """Whether pip's options (command line, configuration and ``PIP_*``) set ``dest``."""
    value: Any = getattr(options, dest, None)
    default: Any = getattr(defaults, dest, None)
    empty: tuple[Any, ...] = (None, [], (), set(), "")
    return value != default and not (value in empty and default in empty)


def refuse_given_options(command: str, options: optparse.Values, defaults: optparse.Values) -> None:
    """Raise a usage error naming the first refused option that was given, and why."""
    for row in option_rows(command):
        if isinstance(row.disposition, Refused) and _given(options, defaults, row.dest):
            shown = "/".join(row.flags)
            raise UsageError(
                f"{shown} is refused: {row.disposition.reason}",
                hint="see the option table: `safepip options`",
                reference="option-refused",
            )


def render_table(command: str) -> str:
    """The table as text, one option a line: its flags, then what safepip does with it."""
    if command not in ("install", "download", "wheel", "lock"):
        raise UsageError(
            f"no option table for {command!r}", hint="use install, download, wheel or lock"
        )
    lines = [f"pip {command} options in safepip:\n"]
    for row in option_rows(command):
        flags = ", ".join(row.flags)
        d = row.disposition
        if isinstance(d, Refused):
            lines.append(f"  {flags:34} refused: {d.reason}\n")
        else:
            lines.append(f"  {flags:34} honoured{': ' + d.note if d.note else ''}\n")
    return "".join(lines)
