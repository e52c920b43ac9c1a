"""A Grid that collects replies promptly: the ServerApp's half of a fast round.

Why: Flower 1.42's deployment Grid (``GrpcGrid``) waits a fixed 3 s between reply pulls in
``send_and_receive``. A private round is six exchanges (participation query, four SecAgg+
stages, evaluation), so that wait alone costs up to 18 s a round while the nodes sit idle.
This wrapper implements ``send_and_receive`` with the Grid's own public ``push_messages`` and
``pull_messages`` and a short pull interval (and starts Flower's back-off for replies whose
content is late at 50 ms, see :mod:`shared.federation.object_pulls`); everything else is
delegated unchanged, so
Flower's workflows (``SecAggPlusWorkflow``) and our own use it as they would the original.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from shared.federation.object_pulls import SERVER_OBJECT_PULLS, quicken_object_pulls

DEFAULT_REPLY_POLL = 0.25  # seconds between reply pulls: a cheap call on loopback or LAN


class PromptGrid(Grid):
    """Delegates to ``inner``; only the wait between reply pulls differs."""

    def __init__(self, inner: Grid, poll_interval: float = DEFAULT_REPLY_POLL) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.inner = inner
        self.poll_interval = poll_interval
        # Replies whose content arrives after them are pulled within 50 ms, not 1-2-4 s.
        quicken_object_pulls(SERVER_OBJECT_PULLS)

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push, then pull until every reply is in or ``timeout`` s have passed.

        The last pull always starts after the deadline: one pull can block for minutes on a
        reply whose node died while sending it (Flower waits for its content), and replies
        that arrived meanwhile must not be dropped as if their nodes had left."""
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            started = time.monotonic()
            received = list(self.pull_messages(pending))
            replies.extend(received)
            pending -= {reply.metadata.reply_to_message_id for reply in received}
            if not pending or (deadline is not None and started >= deadline):
                break
            if deadline is None or time.monotonic() < deadline:
                time.sleep(self.poll_interval)
        return replies

    def __getattr__(self, name: str) -> object:
        # Grid extensions a Flower version adds (close(), get_nodes variants) pass through.
        return getattr(self.inner, name)
