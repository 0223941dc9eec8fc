"""RabbitMQ cluster membership and quorum queues, from rabbitmqctl's output."""

from __future__ import annotations

import json
from dataclasses import dataclass

from hastack.components.fact import Fact, on_success


@dataclass(frozen=True)
class RabbitCluster:
    running: tuple[str, ...]
    disk_nodes: tuple[str, ...]
    ram_nodes: tuple[str, ...]
    partitions: tuple[str, ...]  # nodes reporting a partition
    alarms: tuple[str, ...]
    # Nodes with an AMQP listener. A node whose Erlang VM runs but whose rabbit
    # app has not started (booting, or stuck: rabbitmq-server#6034) is in
    # running_nodes with no listener at all.
    serving: tuple[str, ...] = ()

    def complete(self, expected: set[str], exact: bool = True) -> bool:
        """Every expected node runs, without partitions (and no other node, if exact)."""
        running = set(self.running)
        return not self.partitions and (running == expected if exact else running >= expected)

    @property
    def members(self) -> set[str]:
        return set(self.disk_nodes) | set(self.ram_nodes)


def membership_changes(want: set[str], before: RabbitCluster | None, now: RabbitCluster) -> tuple[
        list[str], list[str]]:
    """(joined, leaving): nodes the spec wants that were not members before this deploy, and
    members the spec no longer lists. Nothing joined a cluster that did not exist yet: its
    quorum queues are declared later, with every node."""
    joined = sorted(want - before.members) if before is not None and before.members else []
    return joined, sorted(now.members - want)


PEER_LIST = "cluster_formation.classic_config.nodes."


def conf_needs_restart(old: str, new: str) -> bool:
    """Whether a rabbitmq.conf change needs the node restarted.

    The classic peer list is read at a node's first boot only; a running
    cluster's members change by join and forget, so a peer list that lost or
    gained a node restarts nothing. An unreadable old file counts as changed.
    """
    def kept(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith(PEER_LIST)]

    return not old or kept(old) != kept(new)


def parse_boot_state(text: str) -> tuple[bool, bool] | None:
    """BOOT_STATE's `{Booting,Running}`; None for anything else (an RPC error)."""
    words = text.strip().strip("{}").split(",")
    if len(words) != 2 or any(w.strip() not in ("true", "false") for w in words):
        return None
    booting, running = (w.strip() == "true" for w in words)
    return booting, running


# How RabbitMQ names an AMQP listener: plain, or over TLS (the only one when the spec has TLS:
# seen in the first lab run with TLS, where every node was called "not serving AMQP").
AMQP_LISTENERS = frozenset({"amqp", "amqp/ssl"})
# The same protocols as Erlang atoms, for STATUS_EVAL (quoted where an atom needs it).
_ERLANG_LISTENERS = ", ".join(p if p.isalpha() else f"'{p}'" for p in sorted(AMQP_LISTENERS))


def parse_cluster_status(text: str) -> RabbitCluster:
    data = json.loads(text)
    alarms = [f"{a.get('node', '?')}: {a.get('type', a)}" if isinstance(a, dict) else str(a)
              for a in data.get("alarms", [])]
    return RabbitCluster(
        running=tuple(sorted(data.get("running_nodes", []))),
        disk_nodes=tuple(sorted(data.get("disk_nodes", []))),
        ram_nodes=tuple(sorted(data.get("ram_nodes", []))),
        partitions=tuple(sorted(k for k, v in (data.get("partitions") or {}).items() if v)),
        alarms=tuple(alarms),
        serving=tuple(sorted(
            n for n, ls in listeners.items() if any(ls_.get("protocol") in AMQP_LISTENERS for ls_ in ls)
        )) if isinstance(listeners := data.get("listeners"), dict) else tuple(sorted(data.get("running_nodes", []))),
    )


@dataclass(frozen=True)
class QuorumQueue:
    name: str
    leader: str  # "" when no member answers as leader
    members: tuple[str, ...]
    online: tuple[str, ...]
    vhost: str = "/"

    @property
    def degraded(self) -> bool:
        """A member is not running: the queue has lost redundancy (not yet availability)."""
        return set(self.online) != set(self.members)


# The cluster's view and its quorum queues in one rabbitmqctl call: each call boots an Erlang VM
# (~0.75 s of CPU), and status runs while a lab heals on two busy cores. Lines are tab-separated:
#   node<TAB>running|disc|ram|partitioned|serving<TAB>comma-separated nodes
#   alarm<TAB>node<TAB>what
#   queue<TAB>vhost<TAB>name<TAB>leader ("" when none answers)<TAB>members<TAB>members on running nodes
# A queue's leader is the one Raft itself reports (ra:members), not the one its record names: after a
# power loss of every node, list_queues showed a stale leader and "running" for a queue whose members
# were all followers at term 0, forever.
# A node serves when it has one of AMQP_LISTENERS.
# Every question to another node is asked of all of them at once with one deadline (erpc:multicall,
# spawned queue askers), so the whole call is bounded (~2 s of questions after the VM's boot) however
# many nodes or queue leaders hang: one per-node rpc:call of 5 s each for partitions and alarms made a
# call with one hung node outlast status's 10 s probe on every host (CI, an isolation run: "rabbitmq:
# ctl3: TimeoutError" for five minutes).
STATUS_EVAL = (
    'Running = rabbit_nodes:all_running(), '
    'J = fun(L) -> string:join([atom_to_list(X) || X <- L], ",") end, '
    'P = fun(K, L) -> io:format("node\\t~ts\\t~ts~n", [K, J(L)]) end, '
    'P("running", Running), '
    'P("disc", rabbit_mnesia:cluster_nodes(disc)), '
    'P("ram", rabbit_mnesia:cluster_nodes(ram)), '
    'P("serving", lists:usort([element(2, Ls) || Ls <- rabbit_networking:active_listeners(), '
    f"lists:member(element(3, Ls), [{_ERLANG_LISTENERS}])])), "
    'Self = self(), '
    'Asked = [begin Ref = make_ref(), spawn(fun() -> Self ! {Ref, case catch ra:members(amqqueue:get_pid(Q), 1500) of '
    '{ok, _, {_, Ld}} -> atom_to_list(Ld); _ -> "" end} end), {Ref, Q} end '
    '|| Q <- rabbit_amqqueue:list(), amqqueue:get_type(Q) =:= rabbit_quorum_queue], '
    'Parts = erpc:multicall(Running, rabbit_node_monitor, partitions, [], 1500), '
    'Alarms = erpc:multicall(Running, rabbit_alarm, get_alarms, [], 1500), '
    'P("partitioned", [N || {N, {ok, [_|_]}} <- lists:zip(Running, Parts)]), '
    'lists:foreach(fun({N, {ok, As}}) when is_list(As) -> [io:format("alarm\\t~ts\\t~ts~n", [N, case A of '
    '{{resource_limit, R, _}, _} -> atom_to_list(R); {T, _} -> io_lib:format("~p", [T]); '
    'T -> io_lib:format("~p", [T]) end]) || A <- As]; (_) -> ok end, lists:zip(Running, Alarms)), '
    'Deadline = erlang:monotonic_time(millisecond) + 500, '
    'lists:foreach(fun({Ref, Q}) -> {resource, V, queue, Nm} = amqqueue:get_name(Q), '
    'Members = maps:get(nodes, amqqueue:get_type_state(Q), []), '
    'Leader = receive {Ref, Got} -> Got after max(0, Deadline - erlang:monotonic_time(millisecond)) -> "" end, '
    'io:format("queue\\t~ts\\t~ts\\t~ts\\t~ts\\t~ts~n", [V, Nm, Leader, J(Members), '
    'J([M || M <- Members, lists:member(M, Running)])]) end, Asked).')


@dataclass(frozen=True)
class RabbitStatus:
    cluster: RabbitCluster
    queues: tuple[QuorumQueue, ...]


def _nodes(text: str) -> tuple[str, ...]:
    return tuple(sorted(n for n in text.split(",") if n))


def parse_quorum_queues(text: str) -> tuple[QuorumQueue, ...]:
    """Queue records, one per line: vhost, name, leader, members, members on running nodes."""
    queues = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5:
            continue
        vhost, name, leader, members, online = parts
        queues.append(QuorumQueue(name, leader, tuple(m for m in members.split(",") if m),
                                  tuple(m for m in online.split(",") if m), vhost))
    return tuple(queues)


def parse_status(text: str) -> RabbitStatus:
    """STATUS's lines; anything else (the closing `ok` of rabbitmqctl eval) is not part of it."""
    nodes: dict[str, tuple[str, ...]] = {}
    alarms: list[str] = []
    queues: list[str] = []
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if kind == "node" and len(parts) == 2:
            nodes[parts[0]] = _nodes(parts[1])
        elif kind == "alarm" and len(parts) == 2:
            alarms.append(f"{parts[0]}: {parts[1]}")
        elif kind == "queue":
            queues.append(rest)
    if "running" not in nodes:
        raise ValueError("rabbitmqctl printed no cluster view")
    cluster = RabbitCluster(running=nodes["running"], disk_nodes=nodes.get("disc", ()),
                            ram_nodes=nodes.get("ram", ()), partitions=nodes.get("partitioned", ()),
                            alarms=tuple(alarms), serving=nodes.get("serving", ()))
    return RabbitStatus(cluster, parse_quorum_queues("\n".join(queues)))


# rabbitmqctl boots an Erlang VM: seconds, not milliseconds.
CLUSTER = Fact("rabbitmq cluster", ("rabbitmqctl", "-q", "cluster_status", "--formatter", "json"),
               on_success(parse_cluster_status), timeout=30)
# Whether the rabbit app boots and whether it runs, inside a VM that answers.
BOOT_STATE = Fact("rabbit app boot state", ("rabbitmqctl", "-q", "eval", "{rabbit:is_booting(), rabbit:is_running()}."),
                  on_success(parse_boot_state), timeout=30)
STATUS = Fact("rabbitmq cluster and quorum queues", ("rabbitmqctl", "-q", "eval", STATUS_EVAL),
              on_success(parse_status), timeout=30)
