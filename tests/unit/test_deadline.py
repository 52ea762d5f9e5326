"""The request deadline's hand-over: exactly one of the worker (finish) and the server (abandon) wins; a thread
outside a request has a deadline that never passes; bounded() never waits past the current deadline."""

from __future__ import annotations

import threading

from vhostplug import deadline


def test_the_worker_finishing_first_keeps_its_answer() -> None:
    dl = deadline.Deadline(5)
    assert dl.finish() and not dl.abandon() and not dl.abandoned


def test_the_server_abandoning_first_undoes_the_worker() -> None:
    dl = deadline.Deadline(5)
    assert dl.abandon() and not dl.finish() and dl.abandoned and dl.expired()


def test_exactly_one_side_wins_a_race() -> None:
    for _ in range(200):
        dl = deadline.Deadline(5)
        wins: list[bool] = []
        threads = [threading.Thread(target=lambda f=f, w=wins: w.append(f())) for f in (dl.finish, dl.abandon)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False, True]


def test_current_and_bounded_follow_the_served_request() -> None:
    assert deadline.current().remaining() > 1e9 and deadline.bounded(3.0) == 3.0
    with deadline.serving(deadline.Deadline(0.2)) as dl:
        assert deadline.current() is dl
        assert deadline.bounded(3.0) <= 0.2
    with deadline.serving(deadline.Deadline(-1)):
        assert deadline.current().expired() and deadline.bounded(3.0) == 0.05  # never a zero wait
    assert deadline.current().remaining() > 1e9
