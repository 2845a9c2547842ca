"""Routing a request to one instance of a group: round robin, least outstanding tokens, least KV.

The balancer only knows what it dispatched and what the instances reported back (completions
carry the instance's KV use), so "least" is judged on that view, never on an instance's private
state. Ties go to the lowest instance index.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmtwin.errors import ConfigurationError

ROUTINGS = ("round_robin", "least_outstanding_tokens", "least_kv")


class Router:
    """Picks instances among ``members`` and keeps the counts its rule needs."""

    def __init__(self, mode: str, members: Sequence[int]) -> None:
        if mode not in ROUTINGS:
            raise ConfigurationError(f"routing must be one of {', '.join(ROUTINGS)}, got {mode!r}")
        if not members:
            raise ConfigurationError("a routing group needs at least one instance")
        self.mode = mode
        self.members = list(members)
        self._ascending = sorted(self.members)
        """The members by index: ``min`` keeps the first of equal loads, so ties go to the lowest."""
        self._next = 0
        self.outstanding = dict.fromkeys(self.members, 0)
        """Tokens (prompt + requested output) dispatched and not completed, per instance."""
        self.kv_blocks = dict.fromkeys(self.members, 0)
        """KV blocks in use as last reported, plus the prompts dispatched since, per instance."""
        self._assigned: dict[int, tuple[int, int]] = {}
        self.down: set[int] = set()
        """Members that failed (never picked until they are back)."""

    def pick(self) -> int:
        """The member the rule chooses among those up (callers check :meth:`any_up` first)."""
        members = self._ascending if not self.down else [m for m in self._ascending if m not in self.down]
        if not members:
            raise AssertionError("every member of the routing group is down")
        if self.mode == "round_robin":
            while True:
                i = self.members[self._next % len(self.members)]
                self._next += 1
                if i not in self.down:
                    return i
        load = self.outstanding if self.mode == "least_outstanding_tokens" else self.kv_blocks
        # A C-level key (no tuple per member): this line is the hottest of a 1,024-device run.
        return min(members, key=load.__getitem__)

    def any_up(self) -> bool:
        return len(self.down) < len(self.members)

    def set_down(self, i: int, down: bool) -> None:
        """Member ``i`` failed (its load forgotten: what it held is reassigned) or is back."""
        if i not in self.outstanding:
            return
        if down:
            self.down.add(i)
            self.kv_blocks[i] = 0
        else:
            self.down.discard(i)

    def owner(self, rid: int) -> int | None:
        """The member request ``rid`` is assigned to (None once finished)."""
        got = self._assigned.get(rid)
        return None if got is None else got[0]

    def assign(self, i: int, rid: int, tokens: int, blocks: int) -> None:
        """Request ``rid`` (``tokens`` outstanding, ``blocks`` of prompt KV) went to ``i``."""
        self._assigned[rid] = (i, tokens)
        self.outstanding[i] += tokens
        self.kv_blocks[i] += blocks

    def finish(self, rid: int) -> None:
        """Request ``rid`` no longer loads the instance it was assigned to."""
        got = self._assigned.pop(rid, None)
        if got is not None:
            self.outstanding[got[0]] -= got[1]

    def report(self, i: int, used_blocks: int) -> None:
        """Instance ``i`` said it uses ``used_blocks`` KV blocks now."""
        if i in self.kv_blocks:
            self.kv_blocks[i] = used_blocks
