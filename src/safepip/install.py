"""The hand-off: safepip's own pip installs only the verified local files, offline."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from safepip.errors import HandoffError
from safepip.models import FileLink

if TYPE_CHECKING:  # annotations only: an installer started early imports this module
    from safepip.config import Settings
    from safepip.models import VerifiedFile

__all__ = ["handoff_command", "run_handoff", "run_pip", "scrubbed_pip_env"]


def scrubbed_pip_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for the hand-off pip: no user ``PIP_*`` settings, no configuration files."""
    env = {k: v for k, v in environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.pop("_PIP_RUNNING_IN_SUBPROCESS", None)
    return env


def _requirement_line(name: str, version: str, extras: Sequence[str], sha256: str) -> str:
    extra_text = f"[{','.join(sorted(extras))}]" if extras else ""
    return f"{name}{extra_text}=={version} --hash=sha256:{sha256}\n"


def handoff_command(
    settings: Settings,
    target_python: str,
    files: Sequence[VerifiedFile],
    workdir: Path,
) -> list[str]:
    """Write the hashed requirement and constraint files into ``workdir`` and build pip's argv."""
    wheelhouse = workdir / "wheels"
    wheelhouse.mkdir()
    requested_lines: list[str] = []
    constraint_lines: list[str] = []
    for vf in files:
        assert isinstance(vf.pin.source, FileLink)
        link_path = wheelhouse / vf.pin.source.filename
        try:
            os.link(vf.path, link_path)
        except OSError:
            link_path.write_bytes(vf.path.read_bytes())
        line = _requirement_line(vf.pin.name, str(vf.pin.version), sorted(vf.pin.extras), vf.sha256)
        if vf.pin.requested:
            requested_lines.append(line)
        else:
            constraint_lines.append(
                _requirement_line(vf.pin.name, str(vf.pin.version), (), vf.sha256)
            )
    reqs = workdir / "requirements.txt"
    cons = workdir / "constraints.txt"
    reqs.write_text("".join(requested_lines))
    cons.write_text("".join(constraint_lines))
    argv = [
        *pip_under(target_python),
        "install",
        "--isolated",
        "--no-input",
        "--disable-pip-version-check",
        "--no-index",
        "--find-links",
        str(wheelhouse),
        "--only-binary",
        ":all:",
        "--require-hashes",
        "--progress-bar",
        "off",
        "-r",
        str(reqs),
        "-c",
        str(cons),
    ]
    if not requested_lines:
        # Only dependencies changed (a user requirement was already satisfied): name them.
        argv[argv.index("-r")] = "-r"
        reqs.write_text("".join(constraint_lines))
    elif any(map(_always_reinstalled, files)):
        # pip reinstalls a local project even at the version installed; from a wheelhouse it
        # would not. The plan is complete, so every file is named and nothing else is looked up.
        reqs.write_text("".join(requested_lines + constraint_lines))
        argv += ["--force-reinstall", "--no-deps"]
    argv += _passthrough_options(settings)
    argv += _deferred_compile_options(settings, argv)
    return argv


def _always_reinstalled(vf: VerifiedFile) -> bool:
    """What pip reinstalls even at the installed version: a project directory (editable or
    not) or a local source archive."""
    direct = vf.pin.direct
    return direct is not None and (
        direct.kind == "directory"
        or direct.editable
        or (direct.url.startswith("file:") and direct.kind == "archive")
    )


def pip_under(target_python: str) -> list[str]:
    """safepip's own pip, run under the target interpreter: what ``pip --python`` does, without
    the first pip start-up that only re-executes itself."""
    from pip._internal.utils.misc import get_runnable_pip

    return [target_python, get_runnable_pip()]


def _deferred_compile_options(settings: Settings, argv: Sequence[str]) -> list[str]:
    """pip leaves bytecode to :mod:`safepip.bytecode`, which compiles in parallel afterwards."""
    from safepip.bytecode import compiles_afterwards

    if compiles_afterwards(settings) and "--no-compile" not in argv:
        return ["--no-compile"]
    return []


def _passthrough_options(settings: Settings) -> list[str]:
    opts: list[str] = []
    if settings.user:
        opts.append("--user")
    if settings.target_dir:
        opts += ["--target", settings.target_dir]
    if settings.prefix:
        opts += ["--prefix", settings.prefix]
    if settings.root:
        opts += ["--root", settings.root]
    for platform in settings.platforms:
        opts += ["--platform", platform]
    if settings.python_version:
        opts += ["--python-version", settings.python_version]
    if settings.implementation:
        opts += ["--implementation", settings.implementation]
    for abi in settings.abis:
        opts += ["--abi", abi]
    if not settings.compile:
        opts.append("--no-compile")
    if settings.no_warn_script_location:
        opts.append("--no-warn-script-location")
    if settings.no_warn_conflicts:
        opts.append("--no-warn-conflicts")
    if settings.root_user_action:
        opts += ["--root-user-action", settings.root_user_action]
    if settings.break_system_packages:
        opts.append("--break-system-packages")
    if settings.force_reinstall:
        opts.append("--force-reinstall")
    if settings.ignore_installed:
        opts.append("--ignore-installed")
    if settings.ignore_requires_python:
        opts.append("--ignore-requires-python")
    if settings.upgrade:
        opts.append("--upgrade")
    for action in settings.exists_action:
        opts += ["--exists-action", action]
    if settings.log:
        opts += ["--log", settings.log]
    if settings.no_color:
        opts.append("--no-color")
    if settings.verbosity > 0:
        opts.append("-" + "v" * settings.verbosity)
    elif settings.verbosity < 0:
        opts.append("-" + "q" * -settings.verbosity)
    return opts


def run_handoff(
    settings: Settings,
    target_python: str,
    files: Sequence[VerifiedFile],
    environ: Mapping[str, str],
) -> None:
    with tempfile.TemporaryDirectory(prefix="safepip-handoff-") as tmp:
        argv = handoff_command(settings, target_python, files, Path(tmp))
        code = run_pip(argv, scrubbed_pip_env(environ))
    if code != 0:
        raise HandoffError(
            f"pip exited with status {code} while installing the verified files",
            hint="pip's message above says why",
        )


def run_pip(argv: Sequence[str], env: Mapping[str, str]) -> int:
    # pip runs in its own session: a Ctrl-C reaches safepip, which stops pip and rolls back.
    from safepip.journal import run_in_own_session

    return run_in_own_session(argv, env)
