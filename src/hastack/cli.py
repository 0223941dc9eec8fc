"""The `hastack` command: parse arguments, call the library, print. Nothing else."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from hastack import __version__
from hastack.checks import RULES, Finding, Severity, run_checks
from hastack.credentials.store import SecretsError, load_or_create
from hastack.render import render_all
from hastack.render.write import write_tree
from hastack.spec.errors import SpecLoadError
from hastack.spec.load import load_spec
from hastack.spec.model import Spec

# Exit codes: 0 fine, 1 the spec has blocking findings, 2 the input is unusable.
EXIT_FINDINGS = 1
EXIT_INPUT = 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _load(path: Path, as_json: bool) -> Spec:
    try:
        return load_spec(path)
    except SpecLoadError as exc:
        if as_json:
            print(json.dumps({"spec": str(path), "input_errors": [e.as_dict() for e in exc.errors]}, indent=2))
        else:
            err.print(f"[bold red]{path}: the spec has {len(exc.errors)} error(s)[/]")
            for e in exc.errors:
                err.print(e.render(), markup=False)
        sys.exit(EXIT_INPUT)


def _print_findings(findings: list[Finding], title: str) -> None:
    counts = Counter(f.severity for f in findings if f.waived is None)
    waived = sum(1 for f in findings if f.waived)
    summary = ", ".join(f"{counts[s]} {s.value}(s)" for s in Severity) + (f", {waived} waived" if waived else "")
    out.print(f"[bold]{title}[/]: {summary}")
    for f in findings:
        style = "dim" if f.waived else _STYLE[f.severity]
        label = "waived" if f.waived else f.severity.value
        out.print(f"\n[{style}]{f.code} {label:<7}[/] [bold]{RULES[f.code].title if f.code in RULES else f.what}[/]"
                  f"  ({f.subject})")
        out.print(f"    {f.what}", markup=False)
        out.print(f"    why: {f.why}", markup=False)
        out.print(f"    fix: {f.fix}", markup=False)
        if f.waived:
            out.print(f"    waived: {f.waived}", markup=False)


@click.group()
@click.version_option(__version__, prog_name="hastack")
def main() -> None:
    """Highly available OpenStack control plane from a declarative spec."""


@main.command()
@click.argument("spec", type=click.Path(path_type=Path), required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--fail-on", type=click.Choice(["error", "warning"]), default="error", show_default=True,
              help="Lowest severity that makes the exit code non-zero.")
@click.option("--list", "list_rules", is_flag=True, help="List every check and exit.")
def check(spec: Path | None, fmt: str, fail_on: str, list_rules: bool) -> None:
    """Check SPEC for HA pitfalls: coded findings with why and how to fix."""
    if list_rules:
        _list_rules(fmt)
        return
    if spec is None:
        raise click.UsageError("give a SPEC file (or --list)")
    s = _load(spec, fmt == "json")
    findings = run_checks(s)
    failing = {Severity.ERROR} | ({Severity.WARNING} if fail_on == "warning" else set())
    failed = any(f.severity in failing and f.waived is None for f in findings)
    if fmt == "json":
        print(json.dumps({
            "spec": str(spec),
            "ok": not failed,
            "counts": {s.value: sum(1 for f in findings if f.severity is s and not f.waived) for s in Severity},
            "findings": [f.as_dict() for f in findings],
        }, indent=2))
    else:
        _print_findings(findings, str(spec))
    sys.exit(EXIT_FINDINGS if failed else 0)


def _list_rules(fmt: str) -> None:
    rules = sorted(RULES.values(), key=lambda r: r.code)
    if fmt == "json":
        print(json.dumps([{"code": r.code, "severity": r.severity.value, "title": r.title, "why": r.why,
                           "fix": r.fix} for r in rules], indent=2))
        return
    table = Table("code", "severity", "title")
    for r in rules:
        table.add_row(r.code, r.severity.value, r.title)
    out.print(table)


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default="/etc/hastack/agent.yaml",
              show_default=True)
def agent(config_path: Path) -> None:
    """Run the node agent: GET /galera answers 200 while this node may take queries, else 503."""
    import logging

    from pydantic import ValidationError

    from hastack.agent.config import load
    from hastack.agent.server import make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = load(config_path)
    except (OSError, ValidationError) as exc:
        err.print(f"agent: cannot use {config_path}: {exc}", markup=False)
        sys.exit(EXIT_INPUT)
    server = make_server(cfg)
    logging.getLogger("hastack.agent").info("serving /galera on %s:%d", cfg.listen, cfg.port)
    server.serve_forever()


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Directory to write one folder per host into.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def render(spec: Path, output: Path, as_json: bool) -> None:
    """Render every configuration file of SPEC, one folder per host under OUTPUT.

    Secrets are generated on first use into SPEC's folder as NAME.secrets.yaml
    (mode 0600) and reused afterwards; they are never printed.
    """
    s = _load(spec, as_json)
    blocking = [f for f in run_checks(s) if f.blocking]
    if blocking:
        if as_json:
            print(json.dumps({"spec": str(spec), "rendered": False,
                              "blocking": [f.as_dict() for f in blocking]}, indent=2))
        else:
            _print_findings(blocking, f"{spec}: not rendered, the spec has blocking findings")
            out.print("\nFix them, or waive one by code in the spec's `waivers:` with a reason.")
        sys.exit(EXIT_FINDINGS)
    try:
        secrets, added, secrets_file = load_or_create(s, spec)
    except (SecretsError, OSError) as exc:
        err.print(f"[bold red]secrets:[/] {exc}", markup=True)
        sys.exit(EXIT_INPUT)
    tree = render_all(s, secrets)
    count = write_tree(tree, output)
    if as_json:
        print(json.dumps({
            "spec": str(spec), "rendered": True, "output": str(output), "files": count,
            "secrets_file": str(secrets_file), "secrets_generated": list(added),
            "hosts": {h: sorted(files) for h, files in sorted(tree.items())},
        }, indent=2))
        return
    if added:
        out.print(f"generated {len(added)} new secret(s) in {secrets_file} (mode 0600)")
    table = Table("host", "roles", "files", "secret files")
    for node in s.nodes:
        files = tree[node.name]
        table.add_row(node.name, ",".join(r.value for r in node.roles), str(len(files)),
                      str(sum(1 for f in files.values() if f.secret)))
    out.print(table)
    out.print(f"wrote {count} files for {len(tree)} hosts to {output} (manifest: {output / 'manifest.json'})")
