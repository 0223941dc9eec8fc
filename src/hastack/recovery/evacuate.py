"""`hastack evacuate SPEC HOST`: the operator's evacuation of one compute, run on a controller by
the evacuator's own code (`hastack-evacuator --evacuate HOST`), under instance HA's rule: fenced
first, then every instance moved; refused, with what was seen, when that cannot be done safely."""

from __future__ import annotations

from hastack.agent.evacuator import Evacuated
from hastack.hosts.fleet import Access, reachable
from hastack.recovery.run import RecoverError
from hastack.render.evacuator import LAUNCHER
from hastack.spec.model import Spec

# Beyond the agent's own wait: its fence (up to 120 s) and its reads.
MARGIN_S = 180.0


def parse_result(stdout: str) -> Evacuated | None:
    """The agent's JSON line (its last line that is one), or None."""
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")), None)
    if line is None:
        return None
    return Evacuated.model_validate_json(line)


async def evacuate(spec: Spec, access: Access, host: str, wait_s: float) -> Evacuated:
    computes = [n.name for n in spec.remote_nodes()]
    if not computes:
        raise RecoverError("instance_ha is off in this spec: no compute has a fence device pacemaker uses, and no "
                           "evacuator runs (set `instance_ha: {enabled: true}` and deploy)")
    if host not in computes:
        raise RecoverError(f"{host} is not a compute of this spec (computes: {', '.join(computes)})")
    errors: list[str] = []
    async with reachable(spec, access, timeout=5) as (hosts, unreachable):
        for n in spec.evacuator_nodes():  # the first controller that can run it
            if n.name not in hosts:
                errors.append(f"{n.name}: {unreachable.get(n.name, 'unreachable')}")
                continue
            res = await hosts[n.name].run([LAUNCHER, "--evacuate", host, "--wait", f"{wait_s:g}"], check=False,
                                          timeout=wait_s + MARGIN_S)
            result = parse_result(res.stdout)
            if result is not None:
                return result
            errors.append(f"{n.name}: exited {res.rc}: {(res.stderr.strip().splitlines() or ['no output'])[-1]}")
    raise RecoverError("no controller could run the evacuation: " + "; ".join(errors))
