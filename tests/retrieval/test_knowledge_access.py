"""Access grants on collections: groups, read vs write, who may change grants, and the
explicit migration of collections stored before grants existed."""

from __future__ import annotations

import uuid

import msgspec
from nats.aio.client import Client

from catalog.files import FileCatalog
from common.bus import Bus
from contracts import subjects
from contracts.access import PUBLIC_READ, AccessControl, Grant
from contracts.auth import Principal
from contracts.knowledge import (
    AccessForm,
    Knowledge,
    KnowledgeAccessUpdate,
    KnowledgeCreate,
    KnowledgeForm,
    KnowledgeList,
    KnowledgeListRequest,
    KnowledgeRef,
    KnowledgeReply,
    KnowledgeUpdate,
)
from retrieval.app import Retrieval
from retrieval.knowledge_store import KnowledgeStore, now
from tests.retrieval.helpers import add, add_file, call, error_code, get, ingested, search, user

BREAD = ["Sourdough bread needs a starter of flour and water fermented for several days."]


def member(*group_ids: str) -> Principal:
    return msgspec.structs.replace(user(), group_ids=group_ids)


async def create_with(bus: Bus, owner: Principal, grants: list[Grant]) -> KnowledgeReply:
    form = KnowledgeForm(name="Team", access_grants=grants)
    reply: KnowledgeReply = await call(
        bus, subjects.KNOWLEDGE_CREATE, KnowledgeCreate(principal=owner, form=form)
    )
    return reply


def group_grant(group_id: str, permission: str) -> Grant:
    return msgspec.convert(
        {"principal_type": "group", "principal_id": group_id, "permission": permission}, Grant
    )


async def test_a_group_grant_reaches_members_only_and_write_lets_them_add_files(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    readers, writers = f"g-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    shared = await create_with(
        mbus, owner, [group_grant(readers, "read"), group_grant(writers, "write")]
    )
    assert shared.access_control is not None and shared.access_control.read is not None
    assert shared.access_control.read.group_ids == [readers]

    reader, writer, outsider = member(readers), member("other", writers), member("other")
    assert (await get(mbus, reader, shared.id)).write_access is False
    assert (await get(mbus, writer, shared.id)).write_access is True
    assert await error_code(get(mbus, outsider, shared.id)) == "not_found"

    bread = await ingested(mbus, retrieval, catalog, writer, BREAD, name="bread.md")
    await add(mbus, writer, shared.id, bread.id)
    hits = (await search(mbus, reader, shared.id, "sourdough starter")).groups[0].hits
    assert hits[0].metadata["file_id"] == bread.id
    assert await error_code(search(mbus, outsider, shared.id, "sourdough")) == "not_found"
    readers_file = await add_file(catalog, reader)
    assert await error_code(add(mbus, reader, shared.id, readers_file.id)) == "forbidden"


async def test_a_write_grantee_renames_but_cannot_change_who_has_access(
    retrieval: Retrieval, mbus: Bus
) -> None:
    owner, writers = user(), f"g-{uuid.uuid4().hex[:8]}"
    grants = [group_grant(writers, "write")]
    shared = await create_with(mbus, owner, grants)
    writer = member(writers)

    # grants absent: unchanged; the same grants sent back (as a UI does): fine too
    for form in (
        KnowledgeForm(name="Renamed"),
        KnowledgeForm(name="Renamed again", access_grants=grants),
    ):
        update = KnowledgeUpdate(principal=writer, knowledge_id=shared.id, form=form)
        renamed = await call(mbus, subjects.KNOWLEDGE_UPDATE, update)
        assert (renamed.name, renamed.access_grants) == (form.name, grants)

    for form in (
        KnowledgeForm(name="Public now", access_grants=[PUBLIC_READ]),
        KnowledgeForm(name="Legacy public", access_control=None),
    ):
        update = KnowledgeUpdate(principal=writer, knowledge_id=shared.id, form=form)
        assert await error_code(call(mbus, subjects.KNOWLEDGE_UPDATE, update)) == "forbidden"
    grab = KnowledgeAccessUpdate(
        principal=writer, knowledge_id=shared.id, form=AccessForm(access_grants=[])
    )
    assert await error_code(call(mbus, subjects.KNOWLEDGE_ACCESS_UPDATE, grab)) == "forbidden"
    assert (await get(mbus, owner, shared.id)).access_grants == grants

    for who in (owner, user("admin")):
        opened = KnowledgeAccessUpdate(
            principal=who, knowledge_id=shared.id, form=AccessForm(access_control=None)
        )
        reply = await call(mbus, subjects.KNOWLEDGE_ACCESS_UPDATE, opened)
        assert (reply.access_grants, reply.access_control) == ([PUBLIC_READ], None)
    assert (await get(mbus, user(), shared.id)).name == "Renamed again"


async def test_every_user_may_be_granted_read_but_never_write(
    retrieval: Retrieval, mbus: Bus
) -> None:
    everyone_writes = msgspec.convert(
        {"principal_type": "user", "principal_id": "*", "permission": "write"}, Grant
    )
    assert await error_code(create_with(mbus, user(), [everyone_writes])) == "invalid"
    assert await error_code(create_with(mbus, user(), [group_grant("*", "read")])) == "invalid"


async def test_collections_stored_before_grants_are_migrated_explicitly_keeping_their_meaning(
    retrieval: Retrieval, module_nc: Client, mbus: Bus
) -> None:
    store = await KnowledgeStore.open(module_nc.jetstream(), retrieval.settings.bucket_prefix)
    owner, other = user(), user()
    stamp = now() - 100
    legacy = {
        "public": None,
        "private": AccessControl(),
        "shared": msgspec.convert({"read": {"user_ids": [other.id]}}, AccessControl),
    }
    ids = {}
    for name, control in legacy.items():
        # what an older ragway stored: no `access_grants` at all
        record = Knowledge(
            id=str(uuid.uuid4()),
            user_id=owner.id,
            name=name,
            access_control=control,
            created_at=stamp,
            updated_at=stamp,
        )
        stored = msgspec.to_builtins(record)
        del stored["access_grants"]
        await store._bucket.put(record.id, msgspec.json.encode(stored))
        ids[name] = record.id

    # before the migration the fallback already keeps the meaning
    assert (await get(mbus, other, ids["public"])).access_grants == [PUBLIC_READ]
    assert await store.migrate_to_grants() >= 3
    assert await store.migrate_to_grants() == 0  # once

    public = await store.get(ids["public"])
    assert public is not None and public.access_grants == [PUBLIC_READ]
    assert public.updated_at == stamp  # a migration is not an edit
    private = await store.get(ids["private"])
    assert private is not None and private.access_grants == []
    assert (await get(mbus, other, ids["public"])).write_access is False
    assert await error_code(get(mbus, other, ids["private"])) == "not_found"
    assert (await get(mbus, other, ids["shared"])).access_grants == [
        Grant(principal_type="user", principal_id=other.id, permission="read")
    ]


def user_grant(user_id: str, permission: str) -> Grant:
    return msgspec.convert(
        {"principal_type": "user", "principal_id": user_id, "permission": permission}, Grant
    )


async def listed(bus: Bus, who: Principal, permission: str = "read") -> list[KnowledgeReply]:
    request = KnowledgeListRequest(principal=who, permission=permission)  # type: ignore[arg-type]
    reply: KnowledgeList = await call(bus, subjects.KNOWLEDGE_LIST, request)
    return reply.items


async def test_listings_hold_exactly_what_each_caller_may_read_as_grants_change(
    retrieval: Retrieval, mbus: Bus
) -> None:
    owner, team = user(), f"g-{uuid.uuid4().hex[:8]}"
    named, teammate, stranger = user(), member(team), user()
    private = await create_with(mbus, owner, [])
    public = await create_with(mbus, owner, [PUBLIC_READ])
    for_team = await create_with(mbus, owner, [group_grant(team, "read")])
    for_named = await create_with(mbus, owner, [user_grant(named.id, "write")])
    ours = {private.id, public.id, for_team.id, for_named.id}

    def ids(items: list[KnowledgeReply]) -> set[str]:
        return {k.id for k in items} & ours  # other tests' public collections may show too

    assert ids(await listed(mbus, owner)) == ours
    assert ids(await listed(mbus, named)) == {public.id, for_named.id}
    assert ids(await listed(mbus, named, "write")) == {for_named.id}
    assert ids(await listed(mbus, teammate)) == {public.id, for_team.id}
    assert ids(await listed(mbus, stranger)) == {public.id}
    assert ids(await listed(mbus, user("admin"))) == ours
    assert ids(await listed(mbus, msgspec.structs.replace(named, role="pending"))) == set()
    # items are the collections without their files' records, with how many they hold
    item = next(k for k in await listed(mbus, owner) if k.id == private.id)
    assert item.files is msgspec.UNSET and item.file_count == 0

    # a grant taken away, or the collection deleted: gone from the very next listing
    await call(
        mbus,
        subjects.KNOWLEDGE_ACCESS_UPDATE,
        KnowledgeAccessUpdate(
            principal=owner, knowledge_id=for_team.id, form=AccessForm(access_grants=[])
        ),
    )
    assert ids(await listed(mbus, teammate)) == {public.id}
    await call(
        mbus, subjects.KNOWLEDGE_DELETE, KnowledgeRef(principal=owner, knowledge_id=public.id)
    )
    assert ids(await listed(mbus, stranger)) == set()
    assert ids(await listed(mbus, owner)) == ours - {public.id}
