"""The chaos workload's pacing (calls started on a schedule, not one after another) and its heartbeat."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from hastack.common.poll import until
from hastack.workload.chaos_load import ChaosTarget, Load, Recorder

TARGET = ChaosTarget(vip="10.0.0.10", run="r", client_address="10.0.0.2")


def test_a_paced_stream_goes_on_starting_calls_while_one_hangs() -> None:
    # The call in flight when the VIP holder crashed is never answered before its timeout; the calls after
    # it must still go out on time, or the stream's gap is that timeout and not the API's.
    stop, release, lock = threading.Event(), threading.Event(), threading.Lock()
    starts: list[float] = []

    def call() -> None:
        with lock:
            starts.append(time.monotonic())
            first = len(starts) == 1
        if first:
            release.wait(10)

    load = Load(TARGET, Recorder(), stop, time.monotonic() + 20)
    runner = threading.Thread(target=load.paced, args=(0.02, 1.0, call))
    runner.start()
    try:
        assert until(lambda: len(starts) >= 6, 5, every=0.01), starts
        assert not release.is_set()  # six calls went out while the first still hung
    finally:
        stop.set()
        release.set()
        runner.join(15)
    assert not runner.is_alive()  # stop ends the loop, and the pool's calls are waited for


def test_a_paced_stream_stops_at_its_deadline_without_a_stop() -> None:
    calls: list[float] = []
    load = Load(TARGET, Recorder(), threading.Event(), time.monotonic() + 1.0)
    runner = threading.Thread(target=load.paced, args=(0.05, 1.0, lambda: calls.append(time.monotonic())))
    runner.start()
    runner.join(5)
    assert not runner.is_alive()
    assert 1 <= len(calls) <= 22  # never more than its schedule, however late the thread ran


HEARTBEAT_CHILD = """
import sys, threading, time
from hastack.workload.chaos_load import ChaosTarget, Load, Recorder, heartbeat
rec = Recorder()
load = Load(ChaosTarget(vip="10.0.0.10", run="r", client_address="10.0.0.2"), rec, threading.Event(),
            time.monotonic() + float(sys.argv[1]))
print("beating", flush=True)
heartbeat(load)
print(" ".join(f"{s.t0!r}:{s.t1!r}" for s in rec.stalls), flush=True)
"""


def test_the_heartbeat_records_the_time_its_process_was_not_running() -> None:
    # The lab's cores starved the client host's process while a fenced host booted; stopping the
    # process (SIGSTOP) is the same to it: nothing of it runs until it is continued.
    child = subprocess.Popen([sys.executable, "-c", HEARTBEAT_CHILD, "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "beating\n"
        time.sleep(0.5)
        stopped = time.monotonic()
        child.send_signal(signal.SIGSTOP)
        time.sleep(0.6)
        child.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        out, _ = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stalls = [tuple(float(x) for x in pair.split(":")) for pair in out.split()]
    # The one long stall spans the stop (a busy machine may add short ones of its own).
    [(t0, t1)] = [s for s in stalls if s[1] - s[0] > 0.4]
    assert t0 <= stopped + 0.05 and resumed - 0.05 <= t1 and t1 - t0 < 1.5
