"""Prompt, bounded object pulls: Flower's wait for a message whose content has not arrived.

Why: Flower 1.42 stores a message before its content (its "objects") and a pull that finds an
object missing retries after 1 s, 2 s, 4 s... up to 10 s apart. Every hop of a round pays it:
the SuperNode pulling from the SuperLink, the node's runner from its SuperNode, the ServerApp
pulling replies from the SuperLink (measured: 7-8 s to pull one small SecAgg+ message with five
nodes on two cores). Here those pulls start retrying after 0.05 s, at most 1 s apart, and
give up after a minute.

This replaces a module-level function of flwr with the same function and other back-off
arguments; flwr is pinned exactly and the tests fail loudly if a patched name moves.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Sequence
from types import ModuleType

OBJECT_PULL_BACKOFF = 0.05  # first retry after a missing object (Flower: 1 s)
OBJECT_PULL_BACKOFF_CAP = 1.0  # longest wait between retries (Flower: 10 s)
# Content still missing after this long is lost (Flower: 2 hours). Seen with ten nodes on two
# cores: a SuperNode's push session was replaced under load, its reply never got its content,
# and the ServerApp sat in one pull for minutes. The pull then fails and the grid answers with
# an error reply for that message, so the round goes on without it.
OBJECT_PULL_MAX_TIME = 60.0

# The ServerApp's Grid pulling replies from the SuperLink.
SERVER_OBJECT_PULLS = (("flwr.superlink.grid.http_grid", "pull_objects"),)


def quicken_object_pulls(targets: Sequence[tuple[str, str]]) -> list[ModuleType]:
    """Give each ``(module, function)`` the short back-off; returns the patched modules.

    Idempotent. Raises if a function moved or lost its back-off parameters (re-measure
    before changing the flwr pin)."""
    patched = []
    for module_name, name in targets:
        module = importlib.import_module(module_name)
        current = getattr(module, name, None)
        original = current.func if isinstance(current, functools.partial) else current
        if original is None or not {"initial_backoff", "backoff_cap", "max_time"} <= set(
            inspect.signature(original).parameters
        ):
            raise RuntimeError(
                f"{module_name}.{name} is not the back-off pull of flwr 1.42; "
                "re-measure Flower's object pulls before changing the pin"
            )
        setattr(
            module,
            name,
            functools.partial(
                original,
                initial_backoff=OBJECT_PULL_BACKOFF,
                backoff_cap=OBJECT_PULL_BACKOFF_CAP,
                max_time=OBJECT_PULL_MAX_TIME,
            ),
        )
        patched.append(module)
    return patched
