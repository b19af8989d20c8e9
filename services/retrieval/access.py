"""Who may read and write collections and files: `common.access` over their records."""

from __future__ import annotations

from common import access
from contracts.access import Grant
from contracts.auth import Principal
from contracts.files import FileRecord
from contracts.knowledge import Knowledge


def grants_of(knowledge: Knowledge) -> list[Grant]:
    return access.stored_grants(knowledge.access_grants, knowledge.access_control)


def can_write_knowledge(principal: Principal, knowledge: Knowledge) -> bool:
    return access.can_write(principal, knowledge.user_id, grants_of(knowledge))


def can_read_knowledge(principal: Principal, knowledge: Knowledge) -> bool:
    return access.can_read(principal, knowledge.user_id, grants_of(knowledge))


def can_read_file(principal: Principal, record: FileRecord) -> bool:
    """A file on its own (outside any collection) is its owner's and the admins'."""
    return access.privileged(principal, record.user_id)
