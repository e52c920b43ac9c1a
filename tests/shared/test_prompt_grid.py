"""PromptGrid: replies are collected with short pulls, a timeout is kept, the rest delegates."""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from shared.federation.prompt_grid import PromptGrid


class ScriptedGrid(Grid):
    """Flower's Grid interface over a script: replies become available after ``delay`` s."""

    def __init__(self, delay: float, answered: set[str]) -> None:
        self.delay = delay
        self.answered = answered
        self.pushed_at = 0.0
        self.pulls = 0

    def set_run(self, run: Any) -> None:
        self.run_set = run

    @property
    def run(self) -> Any:
        return "run"

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:  # fmt: skip
        # Only the fields PromptGrid and this script read (a real Message needs a live run).
        return cast(Message, SimpleNamespace(metadata=SimpleNamespace(dst_node_id=dst_node_id)))

    def get_node_ids(self) -> Iterable[int]:
        return [1, 2, 3]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self.pushed_at = time.monotonic()
        return [f"m{m.metadata.dst_node_id}" for m in messages]

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self.pulls += 1
        if time.monotonic() - self.pushed_at < self.delay:
            return []
        replies = []
        for mid in sorted(set(message_ids) & self.answered):
            reply = SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=mid))
            replies.append(cast(Message, reply))
        return replies

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:  # fmt: skip
        raise AssertionError("PromptGrid must not call the inner grid's slow send_and_receive")


def _messages(grid: Grid) -> list[Message]:
    return [grid.create_message(RecordDict(), "train", n, "1") for n in grid.get_node_ids()]


def test_all_replies_are_collected_soon_after_they_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inner = ScriptedGrid(delay=0.3, answered={"m1", "m2", "m3"})
    grid = PromptGrid(inner, poll_interval=0.05)
    slept: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(
        "shared.federation.prompt_grid.time.sleep", lambda s: (slept.append(s), real_sleep(s))
    )
    replies = list(grid.send_and_receive(_messages(grid), timeout=10))
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m1", "m2", "m3"]
    assert inner.pulls >= 2  # it waited for them, pulling again
    assert slept and set(slept) == {0.05}  # Flower's own grid sleeps 3 s between pulls


class BlockingGrid(ScriptedGrid):
    """The first pull blocks past the deadline (a dead node's reply whose content never
    comes); the other replies arrive meanwhile."""

    def __init__(self, block: float) -> None:
        super().__init__(delay=0.0, answered={"m1"})
        self.block = block

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        if self.pulls == 0:
            time.sleep(self.block)
            replies = super().pull_messages(message_ids)
            self.answered |= {"m2", "m3"}
            return replies
        return super().pull_messages(message_ids)


def test_replies_that_arrived_during_a_blocked_pull_are_not_dropped() -> None:
    inner = BlockingGrid(block=0.3)
    grid = PromptGrid(inner, poll_interval=0.05)
    replies = list(grid.send_and_receive(_messages(grid), timeout=0.1))
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m1", "m2", "m3"]
    assert inner.pulls == 2  # one more pull after the deadline, then it stops


def test_missing_replies_end_at_the_timeout_with_what_arrived() -> None:
    inner = ScriptedGrid(delay=0.0, answered={"m1"})
    grid = PromptGrid(inner, poll_interval=0.05)
    replies = list(grid.send_and_receive(_messages(grid), timeout=0.3))
    assert [r.metadata.reply_to_message_id for r in replies] == ["m1"]


def test_everything_else_is_delegated() -> None:
    inner = ScriptedGrid(delay=0.0, answered=set())
    grid = PromptGrid(inner)
    grid.set_run(cast(Any, "r"))
    assert inner.run_set == "r" and grid.run == "run"
    assert list(grid.get_node_ids()) == [1, 2, 3]
    with pytest.raises(ValueError):
        PromptGrid(inner, poll_interval=0)


def test_the_serverapp_pulls_reply_content_promptly_and_gives_up_after_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reply whose content is late is retried after 50 ms, not 1-2-4 s; one that never
    comes (its node died mid-push) fails after a minute, which Flower's grid turns into an
    error reply for that message instead of blocking the round."""
    import functools
    import inspect

    import flwr.superlink.grid.http_grid as http_grid

    from shared.federation.object_pulls import OBJECT_PULL_MAX_TIME

    monkeypatch.setattr(http_grid, "pull_objects", http_grid.pull_objects)  # undone afterwards
    assert "except ObjectPullError" in inspect.getsource(http_grid.HttpGrid.pull_messages)
    PromptGrid(ScriptedGrid(delay=0.0, answered=set()))
    patched = http_grid.pull_objects
    assert isinstance(patched, functools.partial)
    assert patched.keywords["initial_backoff"] == 0.05
    assert patched.keywords["max_time"] == OBJECT_PULL_MAX_TIME == 60.0
