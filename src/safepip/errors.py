"""The one exception root, typed refusals with hints, and exit statuses."""

from __future__ import annotations

import enum

__all__ = [
    "ConfigError",
    "ExitStatus",
    "FetchError",
    "HandoffError",
    "HashMismatch",
    "IndexUnavailable",
    "InvalidIndexPage",
    "PolicyRefusal",
    "RequirementsError",
    "ResolutionFailed",
    "SafepipError",
    "TargetError",
    "UsageError",
]


class ExitStatus(enum.IntEnum):
    """The exit statuses of safepip's own commands (the README documents them)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    REFUSED = 3


class SafepipError(Exception):
    """All errors raised from safepip's own code.

    ``reference`` is a stable kebab-case name, ``message`` one line saying what went
    wrong, ``hint`` one line saying how to fix it, ``context`` optional detail lines.
    """

    exit_status: ExitStatus = ExitStatus.ERROR
    reference: str = "safepip-error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        context: tuple[str, ...] = (),
        reference: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = context
        if reference is not None:
            self.reference = reference

    def render(self) -> str:
        lines = [f"error: {self.reference}: {self.message}"]
        lines.extend(f"  {line}" for line in self.context)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class UsageError(SafepipError):
    """The command line, a configuration value or a policy file is malformed."""

    exit_status = ExitStatus.USAGE
    reference = "usage"


class ConfigError(UsageError):
    """pip's configuration or safepip's policy cannot be used as written."""

    reference = "config"


class RequirementsError(UsageError):
    """A requirement or requirements file cannot be parsed."""

    reference = "invalid-requirement"


class PolicyRefusal(SafepipError):
    """safepip refuses to go on because a rule forbids it."""

    exit_status = ExitStatus.REFUSED
    reference = "refused"


class HashMismatch(PolicyRefusal):
    """A file's bytes do not match a hash known for it."""

    reference = "hash-mismatch"


class TargetError(SafepipError):
    """The target interpreter cannot be found, probed or used."""

    reference = "target"


class IndexUnavailable(SafepipError):
    """An index or file could not be reached."""

    reference = "index-unreachable"


class InvalidIndexPage(SafepipError):
    """An index page could not be parsed."""

    reference = "invalid-index-page"


class FetchError(SafepipError):
    """A file could not be downloaded."""

    reference = "download-failed"


class ResolutionFailed(SafepipError):
    """No set of versions satisfies the requirements."""

    reference = "resolution-impossible"


class HandoffError(SafepipError):
    """pip failed while installing the verified files."""

    reference = "pip-failed"
