"""The supervisor's restart policy (mcpplat/processes.py): back-off, its reset, and when to give up.

The supervisor itself is exercised end to end by tests/chaos (a killed child is restarted, the platform is not).
"""

from __future__ import annotations

from mcpplat.processes import RestartPolicy


def test_a_child_that_keeps_dying_is_restarted_after_doubling_delays_up_to_the_cap():
    # given a policy that tolerates many failures
    policy = RestartPolicy(initial_s=0.5, max_s=4, max_failures=100, window_s=60)
    # when a child dies right after each start, a minute apart (so the window never fills)
    delays = [policy.after_exit(now=60.0 * i, uptime_s=0.1) for i in range(6)]
    # then the delay doubles and stops at the cap
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_child_that_stayed_up_starts_again_from_the_first_delay():
    # given a child that failed three times in a row
    policy = RestartPolicy(initial_s=0.5, stable_after_s=30, max_failures=100)
    for i in range(3):
        policy.after_exit(now=100.0 * i, uptime_s=1)
    # when it then ran for longer than stable_after_s before dying
    delay = policy.after_exit(now=1000.0, uptime_s=45)
    # then the back-off starts over
    assert delay == 0.5


def test_too_many_exits_within_the_window_give_up():
    # given a policy of 5 exits within 60 s
    policy = RestartPolicy(max_failures=5, window_s=60)
    # when a child exits 5 times within a minute
    results = [policy.after_exit(now=10.0 * i, uptime_s=1) for i in range(5)]
    # then the first four are restarted and the fifth gives up
    assert all(r is not None for r in results[:4])
    assert results[4] is None
    assert policy.recent_failures == 5


def test_exits_spread_wider_than_the_window_never_give_up():
    # given a policy of 5 exits within 60 s
    policy = RestartPolicy(max_failures=5, window_s=60)
    # when a child exits every 20 s (3 in any window), twenty times
    results = [policy.after_exit(now=20.0 * i, uptime_s=19) for i in range(20)]
    # then it is always restarted
    assert None not in results
    assert policy.recent_failures == 3
