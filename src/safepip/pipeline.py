"""The one orchestrator: configuration → target → indexes → resolve → fetch and verify →
hand-off → report. Only this module knows the order."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from packaging.tags import Tag
from packaging.version import Version

from safepip.attest import attested_identities
from safepip.attest import check_files as check_attestations
from safepip.attestlock import locked_identities
from safepip.build import BuildContext, SandboxedBuilder
from safepip.buildconstraints import read_build_constraints
from safepip.bytecode import compile_installed
from safepip.config import Settings
from safepip.direct import (
    build_trees,
    is_tree,
    origin_records,
    prepare_direct,
    record_origins,
    source_dir,
    with_direct_names,
)
from safepip.dryrun import files_not_checked, needs_bytes
from safepip.errors import PolicyRefusal, UsageError
from safepip.fetch import FileStore, MetadataFetcher, download_all
from safepip.gates import plan_findings, with_cooldown
from safepip.index import IndexClient, PageCache
from safepip.journal import guarded_handoff, recover_interrupted
from safepip.lock import (
    check_direct_hash_mode,
    check_lock_constraints,
    check_lock_input,
    check_require_hashes,
    lock_sources,
    locked_direct_requirements,
    plan_from_locks,
)
from safepip.models import FileLink, Finding, Plan, VerifiedFile
from safepip.net import make_session
from safepip.precedence import IndexLinks
from safepip.report import NullReporter, Reporter, build_report, describe_pins, write_report
from safepip.resolve import ResolveOptions, resolve
from safepip.sbom import write_sbom_if_asked
from safepip.target import ProbeAhead, Target, find_interpreter, probe_target
from safepip.verify import verify_wheel
from safepip.wheelgate import check_wheel_contents, layout_from
from safepip.wheelinstall import (
    InstallerAhead,
    applies,
    install_directly,
    standby_installer,
)

__all__ = ["Outcome", "run"]


@dataclass(frozen=True, slots=True)
class Outcome:
    plan: Plan
    installed: bool
    report: Mapping[str, Any] | None = None


def cache_root(settings: Settings) -> Path | None:
    if settings.cache_dir is None:
        return None
    return settings.cache_dir


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("safepip"))


def _resolve_options(settings: Settings, target: Target) -> ResolveOptions:
    tags = target.tags
    markers = dict(target.markers)
    python_version = target.python_version
    if settings.custom_tags:
        from pip._internal.utils.compatibility_tags import get_supported

        version = settings.python_version.replace(".", "") if settings.python_version else None
        supported = get_supported(
            version=version,
            platforms=list(settings.platforms) or None,
            impl=settings.implementation,
            abis=list(settings.abis) or None,
        )
        # pip's tags are its vendored packaging's: rebuild them as ours to compare equal.
        tags = tuple(Tag(t.interpreter, t.abi, t.platform) for t in supported)
        if settings.python_version:
            python_version = Version(settings.python_version)
            parts = settings.python_version.split(".")
            markers["python_version"] = ".".join(parts[:2])
            markers["python_full_version"] = (
                settings.python_version if len(parts) > 2 else settings.python_version + ".0"
            )
    return ResolveOptions(
        tags=tags,
        markers=markers,
        python_version=python_version,
        installed={} if settings.target_dir or settings.command != "install" else target.installed,
        upgrade=settings.upgrade,
        upgrade_strategy=settings.upgrade_strategy,
        ignore_installed=settings.ignore_installed,
        force_reinstall=settings.force_reinstall,
        no_deps=settings.no_deps,
        allows_prereleases=settings.allows_prereleases,
        allows_binary=settings.allows_binary,
        allows_source=settings.allows_source,
        prefer_binary=settings.prefer_binary,
        ignore_requires_python=settings.ignore_requires_python,
        uploaded_prior_to=settings.uploaded_prior_to,
    )


def _check_target_allowed(settings: Settings, target: Target) -> None:
    if settings.require_virtualenv and not target.is_virtualenv:
        raise PolicyRefusal(
            f"the target {target.python} is not a virtual environment (--require-virtualenv)",
            hint="activate a virtual environment or name one with --python",
            reference="virtualenv-required",
        )
    into_env = not (
        (settings.dry_run and settings.report)
        or settings.root
        or settings.target_dir
        or settings.prefix
    )
    if (
        settings.command == "install"
        and into_env
        and target.externally_managed
        and not settings.break_system_packages
    ):
        detail = target.externally_managed_message()
        raise PolicyRefusal(
            f"the target {target.python} is externally managed (PEP 668)"
            + (f": {detail}" if detail else ""),
            hint="use a virtual environment, or pass --break-system-packages if you really mean it",
            reference="externally-managed-environment",
        )


def settle(findings: Sequence[Finding], reporter: Reporter) -> None:
    """Show what the gates found; refuse the whole run (exit 3) if any finding refuses."""
    for finding in findings:
        if finding.action == "warn":
            hint = f"\nhint: {finding.hint}" if finding.hint else ""
            reporter.warning(f"{finding.project}: {finding.message}{hint}")
        elif finding.action == "report":
            reporter.detail(f"{finding.project}: {finding.message}")
    refusals = [f for f in findings if f.action == "refuse"]
    if not refusals:
        return
    first = refusals[0]
    raise PolicyRefusal(
        f"{first.project}: {first.message}"
        + (f" (and {len(refusals) - 1} more refusal(s))" if len(refusals) > 1 else ""),
        context=tuple(f"{f.project}: {f.message} [{f.gate}/{f.rule}]" for f in refusals[1:]),
        hint=first.hint or None,
        reference=first.rule or first.gate,
    )


def run(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    reporter: Reporter | None = None,
    ahead: ProbeAhead | None = None,
    installer: InstallerAhead | None = None,
) -> Outcome:
    environ = os.environ if environ is None else environ
    reporter = reporter or NullReporter()
    if not settings.requirements and not settings.locks:
        raise UsageError(
            f"you must give at least one requirement to {settings.command}",
            hint=f'e.g. "safepip {settings.command} requests" or -r requirements.txt',
        )
    if (
        settings.custom_tags
        and settings.command == "install"
        and not settings.target_dir
        and not settings.dry_run
    ):
        raise UsageError(
            "--platform, --python-version, --implementation and --abi need --target (or --dry-run)",
            hint="as with pip: add --target DIR",
        )
    python, explicit = find_interpreter(settings.python, environ)
    target = recover_interrupted(
        settings,
        probe_target(python, explicit=explicit, ahead=ahead),
        reporter,
        reprobe=lambda: probe_target(python, explicit=explicit),
    )
    _check_target_allowed(settings, target)

    session = make_session(settings.net)
    root = cache_root(settings)
    pages = PageCache(root / "http" if root else None)
    store = FileStore(root / "files" if root else None)
    build_constraints = read_build_constraints(settings)
    sources = (
        build_constraints.add_sources(lock_sources(settings.locks))
        if settings.locks
        else settings.sources
    )
    client = IndexClient(session, sources, cache=pages, timeout=settings.net.timeout)
    builder: SandboxedBuilder | None = None
    stack = contextlib.ExitStack()
    try:
        # pip's wheel installer starts now, under the target interpreter, and waits for the files.
        standby = stack.enter_context(standby_installer(settings, target, environ, early=installer))
        links = IndexLinks.for_settings(client, settings.policy, settings.extra, reporter)
        fetcher = MetadataFetcher(session, store, timeout=settings.net.timeout)
        options = _resolve_options(settings, target)
        check_lock_input(settings, options.markers)
        cooled = with_cooldown(settings, links)
        builder = SandboxedBuilder(
            BuildContext(
                settings,
                target,
                cooled,
                fetcher,
                session,
                store,
                options,
                reporter,
                environ,
                root,
                build_constraints=build_constraints,
            )
        )
        trees = builder  # project directories and git checkouts build in the same sandbox
        check_direct_hash_mode(settings)  # before any checkout or download
        # A pylock.toml's git, directory and archive entries are prepared like any direct reference.
        locked_direct = locked_direct_requirements(settings.locks, options.markers, options.tags)
        direct, direct_findings = prepare_direct(
            [*settings.requirements, *settings.constraints, *locked_direct],
            fetcher,
            builder,
            trees,
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="safepip-direct-"))),
            source_dir(settings, target),
        )
        settings = with_direct_names(settings, direct)  # `git+URL`, `.`: named by their metadata
        if settings.command == "lock":
            from safepip.locker import run_lock

            run_lock(settings, options, cooled, fetcher, session, store, reporter, builder, direct)
            return Outcome(plan=Plan(pins=()), installed=False)
        if settings.locks:
            plan = plan_from_locks(
                settings.locks,
                options.markers,
                options.tags,
                options.installed,
                reinstall=settings.force_reinstall,
                direct=direct,
            )
            check_lock_constraints(plan, settings.constraints, options.markers)
        else:
            plan = resolve(
                settings.requirements,
                settings.constraints,
                cooled,
                fetcher,
                options,
                builder=builder,
                direct=direct,
            )
        check_require_hashes(settings, plan)
        findings: list[Finding] = [*direct_findings, *builder.findings]
        # Plan gates (on the chosen pins, before any file is downloaded) add their findings here.
        # (Projects named by a direct reference are never looked up on an index.)
        index_plan = Plan(pins=tuple(p for p in plan.pins if p.direct is None))
        findings.extend(plan_findings(settings, index_plan, links.project_pages, target.installed))
        to_install = plan.to_install()
        for pin in plan.pins:
            if not pin.needs_install and pin.requested:
                reporter.info(f"Requirement already satisfied: {pin.name}=={pin.version}")
        # A dry run resolves from metadata, as pip's does: no index file is downloaded.
        fetched = [p for p in to_install if not is_tree(p) and needs_bytes(settings, p)]
        findings.extend(files_not_checked(settings, to_install))
        items = []
        for pin in fetched:
            assert isinstance(pin.source, FileLink)
            reporter.detail(f"Collecting {pin.name}=={pin.version} from {pin.source.filename}")
            items.append((pin.source, pin.expected_hashes))
        # Each wheel's modules are compiled in memory as soon as it is in, while the rest come.
        compile_ahead = standby.compile_ahead_of(fetched) if standby is not None else None
        results = download_all(session, items, store, settings.net.timeout, on_done=compile_ahead)
        verified = []
        hashes_by_name: dict[str, str] = {}
        for pin, (path, digests) in zip(fetched, results, strict=True):
            verify_wheel(pin, path)
            verified.append(VerifiedFile(pin=pin, path=path, sha256=digests["sha256"]))
            hashes_by_name[pin.name] = digests["sha256"]
        # Provenance attests the files the index served (an sdist, not the wheel built from it).
        findings += check_attestations(
            settings,
            session,
            verified,
            default_cache_dir() / "sigstore",
            locked=locked_identities(settings),
            pages=links.project_pages,
        )
        verified = builder.wheels_for(verified)  # sdists built in the sandbox, wheels checked
        findings.extend(f for f in builder.findings if f not in findings)
        built_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="safepip-built-")))
        for vf in build_trees([p for p in to_install if is_tree(p)], trees, built_dir):
            verify_wheel(vf.pin, vf.path)
            verified.append(vf)
            hashes_by_name[vf.pin.name] = vf.sha256
        # File gates (on the verified files, before pip runs) add their findings here.
        layout = layout_from(settings, target)
        findings += check_wheel_contents(
            verified,
            policy=settings.policy,
            layout=layout,
            local_editables=[
                vf.path for vf in verified if vf.pin.direct and vf.pin.direct.editable
            ],
        )
        settle(findings, reporter)
        report = None
        if settings.report:  # every pin's metadata parsed: only when asked for
            report = build_report(
                plan, options.markers, links.decisions, hashes_by_name, findings=findings
            )
            write_report(report, settings.report)
        installed = False
        if settings.command == "download" or settings.command == "wheel":
            _copy_out(verified, settings.output_dir or ".", reporter)
        elif settings.dry_run:
            if to_install:
                reporter.info(f"Would install {describe_pins(to_install)}")
        elif verified:
            from safepip.install import run_handoff

            with guarded_handoff(settings, target, verified, reporter):
                if applies(settings, target, verified):
                    install_directly(
                        settings, target.executable, verified, environ, reporter, standby
                    )
                else:
                    if standby is not None:
                        standby.close()  # pip's command line serves this one
                    run_handoff(settings, target.executable, verified, environ)
                    record_origins(
                        target.executable,
                        origin_records(verified, hashes_by_name),
                        target_dir=settings.target_dir,
                        user=settings.user,
                        prefix=settings.prefix,
                        root=settings.root,
                    )
                    compile_installed(settings, target.executable, verified, environ)
            installed = True
        write_sbom_if_asked(
            settings.extra,
            plan,
            hashes_by_name,
            settings.sources,
            identities=attested_identities(findings),
        )
        return Outcome(plan=plan, installed=installed, report=report)
    finally:
        stack.close()
        if builder is not None:
            builder.close()
        client.close()
        store.close()
        session.close()


def _copy_out(files: Sequence[VerifiedFile], directory: str, reporter: Reporter) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for vf in files:
        assert isinstance(vf.pin.source, FileLink)
        dest = out / vf.pin.source.filename
        shutil.copyfile(vf.path, dest)
        reporter.info(f"Saved {dest}")
    if files:
        reporter.info("Successfully downloaded " + describe_pins([f.pin for f in files]))
