"""Git checkouts for VCS requirements: the system ``git``, outside the sandbox, with no hooks,
no submodules and no prompts; the commit checked out is what gets recorded."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from safepip.errors import FetchError, PolicyRefusal, UsageError
from safepip.net import redact_url, strip_credentials

__all__ = ["Checkout", "checkout", "checkout_in_place", "is_commit_id", "split_vcs_url"]

_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# Settings that keep a clone from running anything: hooks off, no fsmonitor, no credential
# helpers that prompt, no automatic submodule work.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "protocol.ext.allow=never",
    "credential.interactive=false",
)


@dataclass(frozen=True, slots=True)
class Checkout:
    """A clean checkout: the tree to build, the commit it is at, and whether the ref asked for
    can move (a branch, a tag, or nothing: only a full commit id is fixed)."""

    tree: Path
    commit_id: str
    requested_revision: str | None
    moving: bool


def is_commit_id(ref: str) -> bool:
    """A full commit id (SHA-1 or SHA-256), the only ref that cannot move."""
    return _COMMIT.fullmatch(ref.lower()) is not None


def split_vcs_url(url: str) -> tuple[str, str | None]:
    """``git+https://host/repo@ref`` → (``https://host/repo``, ``ref``)."""
    bare = url.removeprefix("git+")
    scheme, sep, rest = bare.partition("://")
    path, at, ref = rest.rpartition("@")
    if at and "/" not in ref and path:
        return f"{scheme}{sep}{path}", ref
    return bare, None


def _git(args: list[str], cwd: Path | None, what: str, url: str, timeout: float) -> str:
    git = shutil.which("git")
    if git is None:
        raise UsageError(
            "a git requirement needs the `git` command, which is not on PATH",
            hint="install git, or use a wheel or source archive of the project",
            reference="git-missing",
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k == "GIT_SSL_CAINFO"}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_ASKPASS="/bin/false")
    config: list[str] = []
    for item in _SAFE_CONFIG:
        config += ["-c", item]
    try:
        done = subprocess.run(
            [git, *config, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"git timed out while it {what} {redact_url(url)}") from None
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise FetchError(
            f"git failed while it {what} {redact_url(url)}: {redact_url(detail)[:200]}",
            hint="check the URL and the ref after @",
            reference="vcs-failed",
        )
    return done.stdout


def _resolve_ref(
    ref: str, repo_dir: Path, repo: str, timeout: float, *, remote_first: bool = False
) -> str:
    """The commit a ref names: a commit id, tag or local branch, else a remote branch (first,
    in a clone that was fetched again: its local branches are stale)."""
    candidates = (ref, f"origin/{ref}")
    for candidate in reversed(candidates) if remote_first else candidates:
        try:
            found = _git(
                ["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"],
                repo_dir,
                "resolved a ref of",
                repo,
                timeout,
            ).strip()
        except FetchError:
            continue
        if _COMMIT.fullmatch(found):
            return found
    raise FetchError(
        f"{redact_url(repo)} has no branch, tag or commit {ref!r}",
        hint="check the ref after @ in the URL",
        reference="vcs-failed",
    )


def checkout(url: str, destination: Path, *, timeout: float = 600) -> Checkout:
    """Clone ``url`` (a ``git+`` URL, credentials allowed) into ``destination`` and check out
    the ref it names, or the default branch."""
    repo, ref = split_vcs_url(url)
    destination.mkdir(parents=True, exist_ok=True)
    _git(
        ["clone", "--quiet", "--no-checkout", "--", repo, str(destination)],
        None,
        "cloned",
        repo,
        timeout,
    )
    commit = _resolve_ref(ref or "HEAD", destination, repo, timeout)
    _git(["checkout", "--quiet", "--detach", commit], destination, "checked out", repo, timeout)
    fixed = ref is not None and is_commit_id(ref)
    if ref is not None and fixed and commit != ref.lower():
        raise PolicyRefusal(
            f"{redact_url(repo)}: checking out {ref} gave commit {commit}",
            hint="the repository does not have the commit asked for; do not install it",
            reference="vcs-commit-mismatch",
        )
    return Checkout(tree=destination, commit_id=commit, requested_revision=ref, moving=not fixed)


def checkout_in_place(url: str, destination: Path, *, timeout: float = 600) -> Checkout:
    """An editable checkout at ``destination`` (pip's ``--src``): cloned when it is not there; a
    clone of the same repository already there is fetched and moved to the ref, never reset,
    so work in it is not lost (git refuses to move a tree whose changes would be overwritten).
    Anything else at ``destination`` is left alone and refused."""
    if not destination.exists() or (destination.is_dir() and not any(destination.iterdir())):
        return checkout(url, destination, timeout=timeout)
    repo, ref = split_vcs_url(url)
    origin = ""
    if (destination / ".git").exists():
        try:
            origin = _git(
                ["config", "--get", "remote.origin.url"], destination, "read", repo, timeout
            ).strip()
        except FetchError:
            origin = ""
    if strip_credentials(origin)[0] != strip_credentials(repo)[0]:
        raise UsageError(
            f"{destination} already exists and is not a clone of {redact_url(repo)}",
            hint="move it away, or choose another directory with --src",
            reference="vcs-failed",
        )
    head = _git(["rev-parse", "HEAD"], destination, "read", repo, timeout).strip()
    wanted = ref or "HEAD"
    if not (ref is not None and is_commit_id(ref) and head == ref.lower()):
        fetch = ["fetch", "--quiet", "--tags", "--force", "origin"]
        _git(fetch, destination, "fetched", repo, timeout)
        wanted = ref or "origin/HEAD"
    commit = _resolve_ref(wanted, destination, repo, timeout, remote_first=ref is not None)
    if commit != head:
        _git(["checkout", "--quiet", "--detach", commit], destination, "checked out", repo, timeout)
    fixed = ref is not None and is_commit_id(ref)
    return Checkout(tree=destination, commit_id=commit, requested_revision=ref, moving=not fixed)
