"""``AdapterTurns``: llama.cpp decodes one adapter's requests per step, so edulora lets adapters take turns."""

from __future__ import annotations

import threading
import time

from edulora.inference.llamacpp import AdapterTurns


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _enter_later(turns: AdapterTurns, adapter, log: list, name: str) -> threading.Thread:
    def run():
        turns.enter(adapter)
        log.append(name)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.2)  # let it reach the gate (and wait there, or pass) before the next step
    return thread


def test_the_running_adapter_admits_its_own_while_nobody_else_waits():
    turns, log = AdapterTurns(clock=Clock()), []
    turns.enter("math")
    _enter_later(turns, "math", log, "math-2").join(2)
    assert log == ["math-2"]


def test_a_waiting_adapter_goes_next_once_it_has_waited_its_patience():
    clock = Clock()
    turns, log = AdapterTurns(patience=4.0, clock=clock), []
    turns.enter("math")
    biology = _enter_later(turns, "biology", log, "biology")
    _enter_later(turns, "math", log, "math-soon").join(2)
    assert log == ["math-soon"]  # biology has waited under 4 s: math's newcomer still joins the running group
    clock.now = 4.0
    late_math = _enter_later(turns, "math", log, "math-late")
    base = _enter_later(turns, None, log, "base")
    assert log == ["math-soon"]  # biology's patience is up: newcomers queue behind it
    turns.leave()
    time.sleep(0.2)
    assert log == ["math-soon"]  # math-soon is still running
    turns.leave()  # math's group is done: biology (the longest waiting) goes, alone
    biology.join(2)
    time.sleep(0.2)
    assert log == ["math-soon", "biology"]
    turns.leave()
    late_math.join(2)
    time.sleep(0.2)
    assert log == ["math-soon", "biology", "math-late"]  # math waited since before the base request
    turns.leave()
    base.join(2)
    assert log == ["math-soon", "biology", "math-late", "base"]


def test_all_waiting_requests_of_the_next_adapter_go_together():
    turns, log = AdapterTurns(clock=Clock()), []
    turns.enter("math")
    threads = [_enter_later(turns, "biology", log, f"biology-{i}") for i in range(3)]
    assert log == []
    turns.leave()
    for thread in threads:
        thread.join(2)
    assert sorted(log) == ["biology-0", "biology-1", "biology-2"]
