"""The command line: parse as pip does, dispatch, and map errors to exit statuses."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from safepip import __version__
from safepip.errors import ExitStatus, SafepipError, UsageError

if TYPE_CHECKING:
    from safepip.target import ProbeAhead
    from safepip.wheelinstall import InstallerAhead

__all__ = ["console_main", "main"]

_HELP = """\
Usage:
  safepip <command> [options]

safepip is a hardened front end for pip: it resolves, downloads and verifies every file
itself, applies its policy, and hands pip only verified local files.

Commands served by safepip:
  install      Install packages (verified, then handed to pip offline).
  download     Download and verify packages into a directory.
  wheel        Collect verified wheels into a directory (sdists built in the sandbox).
  lock         Write a hash-pinned lock: pylock.toml (PEP 751) or a hashed requirements file.
  audit        Check an environment or a pinned file for known vulnerabilities.
  advisories   Update or show the offline vulnerability database (advisories update|show).

  options      Show how safepip treats each of pip's options (honoured or refused, and why).
  debug sandbox  Show which build sandbox works here, and why the others do not.

Commands passed to the target environment's pip unchanged:
  list, freeze, show, check, inspect, uninstall, config, cache, hash, debug, help, ...

Exit statuses: 0 done, 1 error, 2 usage, 3 refused by policy.
Every pip option is accepted with pip's meaning or refused with a reason; see
`safepip install --help` for pip's option list.
"""


def _version_text() -> str:
    from pip import __version__ as pip_version

    return f"safepip {__version__} (pip {pip_version})"


def _strip_python_option(args: Sequence[str]) -> tuple[str | None, list[str]]:
    python: str | None = None
    out: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--python":
            python = next(it, None)
        elif arg.startswith("--python="):
            python = arg.split("=", 1)[1]
        else:
            out.append(arg)
    return python, out


def _passthrough(command: str, args: Sequence[str]) -> int:
    """Run the target's own pip for commands that neither resolve, download nor build."""
    from safepip.target import find_interpreter

    python_opt, rest = _strip_python_option(args)
    python, _ = find_interpreter(python_opt or os.environ.get("PIP_PYTHON"), os.environ)
    has_pip = (
        subprocess.run(
            [
                python,
                "-c",
                "import importlib.util,sys; sys.exit(importlib.util.find_spec('pip') is None)",
            ],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if has_pip:
        argv = [python, "-m", "pip", command, *rest]
    else:
        argv = [sys.executable, "-m", "pip", "--python", python, command, *rest]
    try:
        return subprocess.run(argv, check=False).returncode
    except OSError as exc:
        raise SafepipError(f"cannot run pip for {python}: {exc}") from None


def _start_ahead(
    command: str, args: Sequence[str]
) -> tuple[ProbeAhead | None, InstallerAhead | None]:
    """The target's probe and, for an install, pip's wheel installer once the probe has found a
    virtual environment, started while safepip's modules load and pip's options are parsed
    (each is used only if the run turns out to need it, for the same interpreter)."""
    from safepip.target import probe_ahead

    installer = None
    if command == "install":
        from safepip.wheelinstall import InstallerAhead

        installer = InstallerAhead(args, os.environ)
    probe = probe_ahead(args, os.environ, then=installer.probed if installer else None)
    return probe, installer


def _run_pipeline(
    command: str,
    args: Sequence[str],
    ahead: tuple[ProbeAhead | None, InstallerAhead | None] | None = None,
) -> int:
    probe, installer = ahead if ahead is not None else _start_ahead(command, args)
    try:
        from safepip.heap import fix_mmap_threshold

        fix_mmap_threshold()  # before any index page is read: large buffers go back when freed
        from safepip.config import parse_pipeline_args
        from safepip.pipeline import run
        from safepip.report import TerminalReporter

        settings = parse_pipeline_args(command, args)
        stream = sys.stderr if settings.report == "-" else sys.stdout
        from safepip.journal import terminations_interrupt

        with terminations_interrupt():  # SIGTERM unwinds like Ctrl-C: nothing left half-written
            run(
                settings,
                reporter=TerminalReporter(settings.verbosity, stream),
                ahead=probe,
                installer=installer,
            )
    finally:
        if installer is not None:
            installer.close()  # unused (or used and closed already)
    return ExitStatus.OK


def _already_satisfied(args: Sequence[str]) -> bool:
    """The no-op fast path: nothing to install, found without pip, its parser or the network."""
    from safepip.noop import already_satisfied, install_arguments

    install_args = install_arguments(args)
    if install_args is None:
        return False
    satisfied = already_satisfied(install_args, os.environ)
    if satisfied is None:
        return False
    if satisfied.verbosity >= 0:
        print("\n".join(satisfied.messages()))
    return True


def console_main() -> None:
    """The ``safepip`` command: ``main``, then exit without tearing the interpreter down. Thread
    joins and every exit handler still run first; skipped is only the teardown of the modules
    (pip's among them), which takes a tenth of a second and decides nothing."""
    from safepip.heap import collect_less_often

    collect_less_often()  # before the imports: they make objects by the hundred thousand too
    status = [int(ExitStatus.ERROR)]
    atexit.register(_exit_now, status)  # registered first, so it runs after every other handler
    try:
        status[0] = main()
    except SystemExit as exc:
        code = exc.code
        status[0] = code if isinstance(code, int) else (0 if code is None else 1)
        raise
    finally:
        _late_interrupt_exits_now(status)
    sys.exit(status[0])


def _late_interrupt_exits_now(status: list[int]) -> None:
    """Once the outcome is decided, a Ctrl-C while the interpreter waits for the last threads
    (a pool winding down, a cache write) ends the process with that outcome at once, instead of
    a traceback from inside threading's shutdown."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda _signum, _frame: _exit_now(status))


def _exit_now(status: list[int]) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status[0])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except SafepipError as exc:
        print(exc.render(), file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was installed", file=sys.stderr)
        return int(ExitStatus.ERROR)


def _dispatch(args: list[str]) -> int:
    if args and args[0] in ("--version", "-V"):
        print(_version_text())
        return ExitStatus.OK
    if not args or args[0] in ("-h", "--help"):
        print(_HELP, end="")
        return ExitStatus.OK
    if _already_satisfied(args):
        return ExitStatus.OK
    # `safepip install ...`, the common case, gets its probe and installer going before the
    # configuration module (pip's parser among it) loads.
    ahead = _start_ahead(args[0], args[1:]) if args[0] == "install" else None
    try:
        return _dispatch_command(args, ahead)
    finally:
        if ahead is not None and ahead[1] is not None:
            ahead[1].close()  # unused (or used and closed already)


def _dispatch_command(
    args: list[str], ahead: tuple[ProbeAhead | None, InstallerAhead | None] | None
) -> int:
    from safepip.config import PASSTHROUGH_COMMANDS, PIPELINE_COMMANDS, split_command

    command, rest = split_command(args)
    if command is None:
        if "--version" in args or "-V" in args:
            print(_version_text())
            return ExitStatus.OK
        print(_HELP, end="")
        return ExitStatus.OK
    if command in ("-h", "--help"):
        print(_HELP, end="")
        return ExitStatus.OK
    if command in ("audit", "advisories"):
        return _audit_command(rest) if command == "audit" else _advisories_command(rest)
    if command == "options":
        from safepip.options import render_table

        print(render_table(rest[0] if rest else "install"), end="")
        return ExitStatus.OK
    if command in PIPELINE_COMMANDS:
        if "-h" in rest or "--help" in rest:
            return _passthrough_help(command)
        return _run_pipeline(command, rest, ahead if command == "install" else None)
    if command == "debug" and rest[:1] == ["sandbox"]:
        return _debug_sandbox()
    if command in PASSTHROUGH_COMMANDS:
        return _passthrough(command, rest)
    raise UsageError(f"unknown command {command!r}", hint="see `safepip --help`")


def _audit_command(args: Sequence[str]) -> int:
    from pathlib import Path

    from safepip.audit import audit, pins_from_file, render_json, render_text
    from safepip.osvonline import net_from_environment, online_database
    from safepip.policyfile import load_policy
    from safepip.target import find_interpreter, probe_target
    from safepip.vulnerabilities import open_database, vulnerability_policy

    parser = argparse.ArgumentParser(
        prog="safepip audit",
        description="exit 3: vulnerabilities found; the policy's [advisories] online = true "
        "also asks OSV's API, as install does",
    )
    parser.add_argument("--python", help="audit this interpreter's environment")
    parser.add_argument("-r", "--requirement", help="a pinned requirements file or pylock.toml")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--policy", help="a safepip policy file (TOML)")
    opts = _parse_own(parser, args)
    policy = load_policy(os.environ, opts.policy)
    vpolicy = vulnerability_policy(
        policy.section("advisories"), policy.project_section("advisories")
    )
    db = open_database(vpolicy)
    if db is None and not vpolicy.online:
        raise SafepipError(
            "there is no advisory database to audit against",
            hint="run `safepip advisories update` first",
            reference="no-advisory-database",
        )
    if opts.requirement:
        pins, source = pins_from_file(Path(opts.requirement)), opts.requirement
    else:
        python, explicit = find_interpreter(opts.python or os.environ.get("PIP_PYTHON"), os.environ)
        target = probe_target(python, explicit=explicit)
        pins = [(d.name, d.version) for d in target.installed.values()]
        source = target.executable
    online = online_database(net_from_environment(os.environ), vpolicy, sorted(set(pins)))
    databases = [d for d in (db, online) if d is not None]
    result = audit(pins, databases, vpolicy, source)
    print(render_json(result) if opts.format == "json" else render_text(result))
    return ExitStatus.REFUSED if result.vulnerable else ExitStatus.OK


def _advisories_command(args: Sequence[str]) -> int:
    from safepip.advisories import DEFAULT_SOURCE, database_path, load_database, refresh_database
    from safepip.net import NetSettings, make_session
    from safepip.vulnerabilities import safepip_cache_dir

    parser = argparse.ArgumentParser(prog="safepip advisories")
    parser.add_argument("action", choices=("update", "show"))
    parser.add_argument(
        "--from", dest="source", default=DEFAULT_SOURCE, help="OSV zip: URL or path"
    )
    opts = _parse_own(parser, args)
    cache = safepip_cache_dir()
    if opts.action == "show":
        path = database_path(cache)
        if not path.is_file():
            print("No advisory database yet: run `safepip advisories update`.")
            return ExitStatus.OK
        info = load_database(path).info
    else:
        cert = os.environ.get("PIP_CERT")
        with make_session(NetSettings(cert=cert)) as session:
            info = refresh_database(opts.source, cache, session)
    print(f"{info.describe()} (from {info.source}, fetched {info.fetched})")
    return ExitStatus.OK


def _parse_own(parser: argparse.ArgumentParser, args: Sequence[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(list(args))
    except SystemExit as exc:
        if exc.code == 0:
            raise
        raise UsageError("invalid arguments", hint=f"see `{parser.prog} --help`") from None


def _debug_sandbox() -> int:
    """`safepip debug sandbox`: which sandbox backend builds would use, and why not the others."""
    from safepip.build import backend_override
    from safepip.policyfile import load_policy
    from safepip.sandbox import describe

    for line in describe(backend_override(load_policy(), os.environ)):
        print(line)
    return ExitStatus.OK


def _passthrough_help(command: str) -> int:
    return subprocess.run([sys.executable, "-m", "pip", command, "--help"], check=False).returncode


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
