"""The chaos workload's pacing: calls started on a schedule, not one after another."""

from __future__ import annotations

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
