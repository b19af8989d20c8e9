"""Which collections could be visible to whom, kept beside the collections mirror
(`Memberships`), so a listing looks at the caller's candidates, not every collection.

A collection is filed under its owner and under every principal one of its grants names
(a user, a group, or `*` for everyone). A caller's candidates are those filed under their
id, their groups and `*` (an admin's: all of them); the exact access rules
(`retrieval.access`) still decide on each candidate, so the index can only narrow what
is checked, never let anything through.
"""

from __future__ import annotations

from collections import defaultdict

from contracts.access import EVERYONE
from contracts.auth import Principal
from contracts.knowledge import Knowledge
from retrieval.access import grants_of

Holder = tuple[str, str]  # ("user" | "group", id)


def holders(knowledge: Knowledge) -> set[Holder]:
    found: set[Holder] = {("user", knowledge.user_id)}
    for grant in grants_of(knowledge):
        found.add((grant.principal_type, grant.principal_id))
    return found


class VisibilityIndex:
    def __init__(self) -> None:
        self._filed: dict[str, set[Holder]] = {}  # collection id -> where it is filed
        self._under: defaultdict[Holder, set[str]] = defaultdict(set)

    def put(self, knowledge: Knowledge) -> None:
        after = holders(knowledge)
        before = self._filed.get(knowledge.id, set())
        if after == before:
            return
        for holder in before - after:
            self._unfile(holder, knowledge.id)
        for holder in after - before:
            self._under[holder].add(knowledge.id)
        self._filed[knowledge.id] = after

    def drop(self, knowledge_id: str) -> None:
        for holder in self._filed.pop(knowledge_id, set()):
            self._unfile(holder, knowledge_id)

    def candidates(self, principal: Principal) -> set[str]:
        """The collections `principal` might read or write (a superset of those they may)."""
        if principal.role == "admin":
            return set(self._filed)
        found = set(self._under.get(("user", principal.id), ()))
        if principal.role == "pending":
            return found  # only their own, whatever the grants say
        found |= self._under.get(("user", EVERYONE), set())
        for group_id in principal.group_ids:
            found |= self._under.get(("group", group_id), set())
        return found

    def _unfile(self, holder: Holder, knowledge_id: str) -> None:
        ids = self._under.get(holder)
        if ids is not None:
            ids.discard(knowledge_id)
            if not ids:
                del self._under[holder]
