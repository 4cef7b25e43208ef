"""pip's option parser for a command, built from pip's own option definitions without importing
pip's command modules (``pip install``'s pulls in pip's whole resolver, network and progress-bar
stack, a tenth of a second at every start, to build a parser)."""

from __future__ import annotations

import optparse
from typing import Any

__all__ = ["CHECKED_PIP_VERSIONS", "command_parser", "same_as_pip"]

# The pip releases whose `install` parser `_install_parser` rebuilds option for option;
# tests/test_pipparser.py compares the two for the installed pip. Any other pip: pip's own command.
CHECKED_PIP_VERSIONS = frozenset({"26.3"})

# pip's `InstallCommand` docstring and usage: its `--help` text, kept identical.
_INSTALL_DESCRIPTION = """
    Install packages from:

    - PyPI (and other indexes) using requirement specifiers.
    - VCS project urls.
    - Local project directories.
    - Local or remote source archives.

    pip also supports installing from "requirements files", which provide
    an easy way to specify a whole environment to be installed.
    """
_INSTALL_USAGE = """
      %prog [options] <requirement specifier> [package-index-options] ...
      %prog [options] -r <requirements file> [package-index-options] ...
      %prog [options] [-e] <vcs project url> ...
      %prog [options] [-e] <local project path> ...
      %prog [options] <archive url/path> ..."""


def command_parser(name: str, *, isolated: bool = False) -> optparse.OptionParser:
    """The parser ``pip <name>`` parses with (configuration files and ``PIP_*`` included)."""
    if name == "install" and same_as_pip():
        return _install_parser(isolated)
    from pip._internal.commands import create_command

    parser: optparse.OptionParser = create_command(name, isolated=isolated).parser
    return parser


def same_as_pip() -> bool:
    """Whether the running pip is one whose ``install`` parser this module rebuilds exactly."""
    from pip import __version__

    return __version__ in CHECKED_PIP_VERSIONS


def _install_parser(isolated: bool) -> optparse.OptionParser:
    """``pip install``'s parser, as ``InstallCommand(name="install")`` builds it: the base
    command's parser and general options, ``add_options``, then the requirement commands'
    ``--group`` and ``--no-clean``."""
    from pip._internal.cli import cmdoptions
    from pip._internal.cli.parser import ConfigOptionParser, UpdatingDefaultsHelpFormatter
    from pip._internal.utils.misc import get_prog

    parser = ConfigOptionParser(
        usage=_INSTALL_USAGE,
        prog=f"{get_prog()} install",
        formatter=UpdatingDefaultsHelpFormatter(),
        add_help_option=False,
        name="install",
        description=_INSTALL_DESCRIPTION,
        isolated=isolated,
    )
    cmd_opts = optparse.OptionGroup(parser, "Install Options")
    parser.add_option_group(cmdoptions.make_option_group(cmdoptions.general_group, parser))
    _add_install_options(cmd_opts, cmdoptions)
    parser.insert_option_group(0, cmdoptions.make_option_group(cmdoptions.index_group, parser))
    parser.insert_option_group(
        0, cmdoptions.make_option_group(cmdoptions.package_selection_group, parser)
    )
    parser.insert_option_group(0, cmd_opts)
    cmd_opts.add_option(
        "--report",
        dest="json_report_file",
        metavar="file",
        default=None,
        help=(
            "Generate a JSON file describing what pip did to install "
            "the provided requirements. "
            "Can be used in combination with --dry-run and --ignore-installed "
            "to 'resolve' the requirements. "
            "When - is used as file name it writes to stdout. "
            "When writing to stdout, please combine with the --quiet option "
            "to avoid mixing pip logging output with JSON output."
        ),
    )
    cmd_opts.add_option(cmdoptions.dependency_groups())
    cmd_opts.add_option(cmdoptions.no_clean())
    built: optparse.OptionParser = parser
    return built


def _add_install_options(cmd_opts: optparse.OptionGroup, cmdoptions: Any) -> None:
    """The ``Install Options`` group of ``InstallCommand.add_options``, in its order."""
    for make in (
        cmdoptions.requirements,
        cmdoptions.constraints,
        cmdoptions.build_constraints,
        cmdoptions.requirements_from_scripts,
        cmdoptions.no_deps,
        cmdoptions.only_deps,
        cmdoptions.editable,
    ):
        cmd_opts.add_option(make())
    cmd_opts.add_option(
        "--dry-run",
        action="store_true",
        dest="dry_run",
        default=False,
        help=(
            "Don't actually install anything, just print what would be. "
            "Can be used in combination with --ignore-installed "
            "to 'resolve' the requirements."
        ),
    )
    cmd_opts.add_option(
        "-t",
        "--target",
        dest="target_dir",
        metavar="dir",
        default=None,
        help=(
            "Install packages into <dir>. "
            "By default this will not replace existing files/folders in "
            "<dir>. Use --upgrade to replace existing packages in <dir> "
            "with new versions."
        ),
    )
    cmdoptions.add_target_python_options(cmd_opts)
    cmd_opts.add_option(
        "--user",
        dest="use_user_site",
        action="store_true",
        help=(
            "Install to the Python user install directory for your "
            "platform. Typically ~/.local/, or %APPDATA%\\Python on "
            "Windows. (See the Python documentation for site.USER_BASE "
            "for full details.)"
        ),
    )
    cmd_opts.add_option(
        "--no-user", dest="use_user_site", action="store_false", help=optparse.SUPPRESS_HELP
    )
    cmd_opts.add_option(
        "--root",
        dest="root_path",
        metavar="dir",
        default=None,
        help="Install everything relative to this alternate root directory.",
    )
    cmd_opts.add_option(
        "--prefix",
        dest="prefix_path",
        metavar="dir",
        default=None,
        help=(
            "Installation prefix where lib, bin and other top-level "
            "folders are placed. Note that the resulting installation may "
            "contain scripts and other resources which reference the "
            "Python interpreter of pip, and not that of ``--prefix``. "
            "See also the ``--python`` option if the intention is to "
            "install packages into another (possibly pip-free) "
            "environment."
        ),
    )
    cmd_opts.add_option(cmdoptions.src())
    cmd_opts.add_option(
        "-U",
        "--upgrade",
        dest="upgrade",
        action="store_true",
        help=(
            "Upgrade all specified packages to the newest available "
            "version. The handling of dependencies depends on the "
            "upgrade-strategy used."
        ),
    )
    cmd_opts.add_option(
        "--upgrade-strategy",
        dest="upgrade_strategy",
        default="only-if-needed",
        choices=["only-if-needed", "eager"],
        help=(
            "Determines how dependency upgrading should be handled "
            "[default: %default]. "
            '"eager" - dependencies are upgraded regardless of '
            "whether the currently installed version satisfies the "
            "requirements of the upgraded package(s). "
            '"only-if-needed" -  are upgraded only when they do not '
            "satisfy the requirements of the upgraded package(s)."
        ),
    )
    cmd_opts.add_option(
        "--force-reinstall",
        dest="force_reinstall",
        action="store_true",
        help="Reinstall all packages even if they are already up-to-date.",
    )
    cmd_opts.add_option(
        "-I",
        "--ignore-installed",
        dest="ignore_installed",
        action="store_true",
        help=(
            "Ignore the installed packages, overwriting them. "
            "This can break your system if the existing package "
            "is of a different version or was installed "
            "with a different package manager!"
        ),
    )
    for make in (
        cmdoptions.ignore_requires_python,
        cmdoptions.no_build_isolation,
        cmdoptions.use_pep517,
        cmdoptions.check_build_deps,
        cmdoptions.override_externally_managed,
        cmdoptions.config_settings,
    ):
        cmd_opts.add_option(make())
    cmd_opts.add_option(
        "--compile",
        action="store_true",
        dest="compile",
        default=True,
        help="Compile Python source files to bytecode",
    )
    cmd_opts.add_option(
        "--no-compile",
        action="store_false",
        dest="compile",
        help="Do not compile Python source files to bytecode",
    )
    cmd_opts.add_option(
        "--no-warn-script-location",
        action="store_false",
        dest="warn_script_location",
        default=True,
        help="Do not warn when installing scripts outside PATH",
    )
    cmd_opts.add_option(
        "--no-warn-conflicts",
        action="store_false",
        dest="warn_about_conflicts",
        default=True,
        help="Do not warn about broken dependencies",
    )
    for make in (
        cmdoptions.require_hashes,
        cmdoptions.no_require_hashes,
        cmdoptions.progress_bar,
        cmdoptions.root_user_action,
    ):
        cmd_opts.add_option(make())
