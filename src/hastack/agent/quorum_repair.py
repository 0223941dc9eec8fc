"""The RabbitMQ watch's third duty: a quorum queue member that should run on this node and does not.

RabbitMQ 3.10 (bookworm's) can lose a member's data when clients declare the same quorum queue while
a member's node is coming back: each declare that times out deletes "its" new server and data directory,
and one of those deletions can hit the member another declare just started. The member runs on until
its node restarts, then cannot come back (`recover: quorum queue ... could not be restarted
{error,enoent}`). With two members (the guide's two RabbitMQ nodes) the survivor can never be elected
alone: the queue has no leader for good, and RabbitMQ has no command that helps without one (seen in
the seed lab: heat-engine's listener queue after a controller rebooted, the matrix on 5b3231a).

So once a minute, while the node serves, the watch asks its node (one `rabbitmqctl eval`, ~1 s of CPU)
which quorum queues have a member here whose process is not running. One still missing at the next
look is repaired, in the least costly way that works:
- its server is restarted (`restart_server`): nothing is lost;
- if it cannot be (its data is gone) and the other members can elect without it (three or more), it
  is regrown: removed from the queue through the leader, then added again, empty; the leader sends it
  what it lacks. Nothing is lost (the others hold every acknowledged message) and the queue keeps
  serving. If the removal fails (no leader at that moment), it stays one member short and is tried
  again later; if the add fails after it, this node is no longer a member, nothing here tries again, and
  the log line says so (`rabbitmq-queues grow NODE all` adds it back);
- otherwise (two members: the queue can never elect again) the queue is deleted, but only if every
  other member answers and holds no message. Clients declare it again as they reconnect (oslo.messaging
  does). A queue that still holds messages is kept, and the log gives the command for a person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Looks at this pace (a rabbitmqctl each: its Erlang VM costs ~1 s of CPU).
EVERY_S = 60.0
# A queue seen missing its member at two looks this far apart is repaired: a member starting (a declare,
# a node's recovery) is not taken for a lost one.
CONFIRM_S = 50.0
# A queue repaired and still missing its member is tried again after this long (its log line again).
AGAIN_S = 600.0
ACTOR = "hastack-rabbit-watch"

# Prints "vhost<TAB>queue<TAB>node,node" for each quorum queue with a member on this node that is not running.
LOST = """\
[io:format("~ts\\t~ts\\t~ts~n", [VHost, Name, lists:join(",", [atom_to_list(N) || N <- Nodes])])
 || Q <- rabbit_amqqueue:list_local_quorum_queues(),
    {RaName, _} <- [amqqueue:get_pid(Q)],
    whereis(RaName) =:= undefined,
    {resource, VHost, queue, Name} <- [amqqueue:get_name(Q)],
    Nodes <- [maps:get(nodes, amqqueue:get_type_state(Q), [])]],
ok."""

# Repairs one queue (VHOST and NAME are code point lists: no quoting of a name in Erlang source) and prints
# one line: gone | running | restarted | regrown<TAB>why | deleted<TAB>why | kept<TAB>why | held<TAB>why (held: it
# holds messages).
REPAIR = """\
VHost = unicode:characters_to_binary(VHOST),
Name = unicode:characters_to_binary(NAME),
QName = rabbit_misc:r(VHost, queue, Name),
case rabbit_amqqueue:lookup(QName) of
  {error, not_found} -> io:format("gone~n");
  {ok, Q} ->
    {RaName, _} = amqqueue:get_pid(Q),
    Nodes = maps:get(nodes, amqqueue:get_type_state(Q), []),
    Others = Nodes -- [node()],
    case whereis(RaName) of
      Pid when is_pid(Pid) -> io:format("running~n");
      undefined ->
        case rabbit_quorum_queue:restart_server({RaName, node()}) of
          ok -> io:format("restarted~n");
          Failed when length(Nodes) > 2 ->
            Out = (catch rabbit_quorum_queue:delete_member(VHost, Name, node())),
            In = case Out of
                   ok -> (catch rabbit_quorum_queue:add_member(VHost, Name, node(), 60000));
                   _ -> not_tried
                 end,
            case In of
              ok -> io:format("regrown\\trestart: ~0p; a new member here, filled by the other ~b~n",
                              [Failed, length(Others)]);
              _ -> io:format("kept\\trestart: ~0p; regrow: remove ~0p, add ~0p; the other ~b members elect without "
                             "this one~n", [Failed, Out, In, length(Others)])
            end;
          Failed ->
            Answers = [catch ra:local_query({RaName, N}, fun rabbit_fifo:query_messages_total/1, 5000) || N <- Others],
            Counts = [C || {ok, {_, C}, _} <- Answers],
            Total = lists:sum(Counts),
            if
              Others =:= [] orelse length(Counts) =/= length(Others) ->
                io:format("kept\\trestart: ~0p; the other members did not answer: ~0p~n", [Failed, Answers]);
              Total =/= 0 ->
                io:format("held\\trestart: ~0p; the other members hold ~b message(s)~n", [Failed, Total]);
              true ->
                Deleted = rabbit_amqqueue:delete(Q, false, false, <<"ACTOR">>),
                io:format("deleted\\trestart: ~0p; it could never elect a leader and held no message; "
                          "delete: ~0p~n", [Failed, Deleted])
            end
        end
    end
end."""


@dataclass(frozen=True, order=True)
class Member:
    """A quorum queue whose member on this node is not running."""

    vhost: str
    queue: str
    nodes: tuple[str, ...] = field(compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.vhost, self.queue


def _codepoints(text: str) -> str:
    return "[" + ",".join(str(ord(c)) for c in text) + "]"


# rabbitmqctl as the rabbitmq user, straight: Debian's /usr/sbin/rabbitmqctl, run as root, goes through
# `su`, which writes four PAM lines to the journal for each call (the watch's look, once a minute) and
# would leave the Erlang VM running when a timed-out call is killed (SIGKILL reaches su, not its child). setpriv
# execs: the process killed is the VM. HOME is where the node's cookie is.
CTL = ("setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups", "env", "HOME=/var/lib/rabbitmq",
       "/usr/lib/rabbitmq/bin/rabbitmqctl")


def lost_argv(ctl: Sequence[str] = CTL) -> list[str]:
    return [*ctl, "-q", "eval", LOST]


def repair_expr(member: Member) -> str:
    return (REPAIR.replace("VHOST", _codepoints(member.vhost)).replace("NAME", _codepoints(member.queue))
            .replace("ACTOR", ACTOR))


def repair_argv(member: Member, ctl: Sequence[str] = CTL) -> list[str]:
    return [*ctl, "-q", "eval", repair_expr(member)]


def parse_lost(text: str) -> tuple[Member, ...]:
    """LOST's output; its last line is eval's own `ok`."""
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            out.append(Member(parts[0], parts[1], tuple(n for n in parts[2].split(",") if n)))
    return tuple(sorted(out))


def parse_repair(text: str) -> tuple[str, str]:
    """REPAIR's verdict and why; ("unknown", the output) when it printed none (an error from eval)."""
    for line in text.splitlines():
        verdict, _, why = line.partition("\t")
        if verdict in ("gone", "running", "restarted", "regrown", "deleted", "kept", "held"):
            return verdict, why
    return "unknown", text.strip()[-300:]


@dataclass(frozen=True)
class Lost:
    """What the duty remembers between looks: since when each queue has been seen missing its member
    here, and when each was last repaired."""

    since: Mapping[tuple[str, str], float] = field(default_factory=dict)
    repaired: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def after(self, now: float, seen: tuple[Member, ...]) -> tuple[Lost, tuple[Member, ...]]:
        """The next state, and the queues to repair now."""
        since = {m.key: self.since.get(m.key, now) for m in seen}
        due = tuple(m for m in seen
                    if now - since[m.key] >= CONFIRM_S and now - self.repaired.get(m.key, now - AGAIN_S) >= AGAIN_S)
        repaired = {k: t for k, t in self.repaired.items() if k in since} | {m.key: now for m in due}
        return Lost(since, repaired), due


def command_for(member: Member) -> str:
    """What a person runs once they decide the messages may go."""
    vhost = f" -p '{member.vhost}'" if member.vhost != "/" else ""
    return f"rabbitmqctl delete_queue{vhost} '{member.queue}'"
