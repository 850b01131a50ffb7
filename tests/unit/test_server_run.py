"""The supervisor's restart policy and its log wording, without processes (tests/integration/
test_server_supervisor.py runs the real supervisor)."""

from __future__ import annotations

import signal

from reference_server.run import MAX_RESTARTS, RESTART_WINDOW_S, RestartBudget, describe_exit


def test_budget_allows_the_limit_within_the_window_then_refuses() -> None:
    budget = RestartBudget(limit=3, window_s=60.0)
    assert [budget.spend(t) for t in (0.0, 10.0, 20.0)] == [True, True, True]
    assert budget.spend(59.9) is False  # a fourth within 60 s of the first
    assert budget.spend(60.0) is True  # the first has left the window


def test_refusals_do_not_count_as_restarts() -> None:
    budget = RestartBudget(limit=1, window_s=10.0)
    assert budget.spend(0.0)
    assert not budget.spend(5.0)
    assert not budget.spend(9.0)
    assert budget.spend(10.0)  # only the restart at 0 counted, not the refused ones


def test_defaults_are_the_documented_policy() -> None:
    budget = RestartBudget()
    assert (budget.limit, budget.window_s) == (MAX_RESTARTS, RESTART_WINDOW_S) == (5, 60.0)
    assert all(budget.spend(float(t)) for t in range(MAX_RESTARTS))
    assert not budget.spend(RESTART_WINDOW_S - 1)


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "signal SIGSEGV"
    assert describe_exit(-200) == "signal 200"
