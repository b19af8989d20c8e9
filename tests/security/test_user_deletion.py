"""Deleting a user removes everything the user owned, in every service that keeps it.

The finding: a deleted user's files, uploaded bytes, vectors and *public* collections
stayed searchable. Here a user with a processed file, a public collection holding it, a
private one, a chat, a workspace model, a group membership and an API key is deleted
through the HTTP API; then each owner's store is asked directly whether anything is left.
"""

from __future__ import annotations

import pytest

from catalog.files import blob_name, text_name
from common.errors import RagwayError
from contracts import subjects
from contracts.retrieval import FileVectorsRef
from gateway.routes_chats import CHATS
from gateway.state import BUS, CATALOG
from tests.security.conftest import owned_by_new_user
from tests.support.stack import Account, RagServices, Stack

pytestmark = pytest.mark.security

QUERY = "/api/v1/retrieval/query/collection"


async def _vectors(stack: Stack, file_id: str) -> int:
    stored = await stack.gateway.app[BUS].call(
        subjects.VECTORS_STORED, FileVectorsRef(file_id=file_id), timeout=5
    )
    return stored.count


async def _blob_size(stack: Stack, name: str) -> int | None:
    try:
        return await stack.gateway.app[CATALOG].blobs.size(name)
    except RagwayError as exc:
        assert exc.code == "not_found"
        return None


async def test_deleting_a_user_removes_files_bytes_vectors_collections_chats_and_keys(
    stack: Stack, rag: RagServices, admin: Account, user: Account
) -> None:
    owned = await owned_by_new_user(stack)
    owner = owned.owner
    status, public = await stack.call(
        "POST",
        "/api/v1/knowledge/create",
        headers=owner.key_auth,
        json={"name": "A's public collection", "access_control": None},
    )
    assert status == 200, public
    status, _ = await stack.call(
        "POST",
        f"/api/v1/knowledge/{public['id']}/file/add",
        headers=owner.key_auth,
        json={"file_id": owned.file_id},
    )
    assert status == 200
    search = {"collection_names": [public["id"]], "query": "vault code"}
    # before: everything exists, and another user finds A's text through the public one
    status, hits = await stack.call("POST", QUERY, headers=user.key_auth, json=search)
    assert status == 200 and "4711" in str(hits["documents"]), hits
    assert await _vectors(stack, owned.file_id) > 0
    assert await _blob_size(stack, blob_name(owned.file_id))
    assert await _blob_size(stack, text_name(owned.file_id))
    assert await stack.gateway.app[CHATS].list(owner.id)
    preset = f"/api/v1/models/model?id={owned.preset_id}"
    assert (await stack.call("GET", preset, headers=admin.key_auth))[0] == 200
    group = f"/api/v1/groups/id/{owned.group_id}"
    status, before = await stack.call("GET", group, headers=admin.key_auth)
    assert owner.id in before["user_ids"], before

    status, body = await stack.call("DELETE", f"/api/v1/users/{owner.id}", headers=admin.key_auth)
    assert (status, body) == (200, True)

    status, body = await stack.call("POST", QUERY, headers=user.key_auth, json=search)
    assert status == 404, body
    for path in (
        f"/api/v1/files/{owned.file_id}",
        f"/api/v1/knowledge/{public['id']}",
        f"/api/v1/knowledge/{owned.knowledge_id}",
    ):
        status, body = await stack.call("GET", path, headers=admin.key_auth)
        assert status == 404, (path, body)
    assert await _vectors(stack, owned.file_id) == 0
    assert await _blob_size(stack, blob_name(owned.file_id)) is None
    assert await _blob_size(stack, text_name(owned.file_id)) is None
    assert await stack.gateway.app[CHATS].list(owner.id) == []
    assert (await stack.call("GET", preset, headers=admin.key_auth))[0] == 404
    status, after = await stack.call("GET", group, headers=admin.key_auth)
    assert status == 200 and owner.id not in after["user_ids"], after
    assert (await stack.call("GET", "/api/v1/auths/", headers=owner.key_auth))[0] == 401
    # nothing is left to delete a second time
    status, body = await stack.call("DELETE", f"/api/v1/users/{owner.id}", headers=admin.key_auth)
    assert status == 404, body


async def test_another_users_collection_keeps_its_other_files(
    stack: Stack, rag: RagServices, admin: Account, user: Account
) -> None:
    """A's file leaves B's collection with A; B's collection and B's files stay."""
    leaving = await owned_by_new_user(stack)
    staying = await owned_by_new_user(stack)
    status, _ = await stack.call(
        "POST",
        f"/api/v1/knowledge/{staying.knowledge_id}/file/add",
        headers=admin.key_auth,  # an admin may link any file into any collection
        json={"file_id": leaving.file_id},
    )
    assert status == 200
    status, body = await stack.call(
        "DELETE", f"/api/v1/users/{leaving.owner.id}", headers=admin.key_auth
    )
    assert status == 200, body
    status, kept = await stack.call(
        "GET", f"/api/v1/knowledge/{staying.knowledge_id}", headers=staying.owner.key_auth
    )
    assert status == 200
    assert [f["id"] for f in kept["files"]] == [staying.file_id]
    assert await _vectors(stack, staying.file_id) > 0


async def test_an_admin_cannot_delete_their_own_account(stack: Stack, admin: Account) -> None:
    status, body = await stack.call("DELETE", f"/api/v1/users/{admin.id}", headers=admin.key_auth)
    assert status == 403, body
    assert (await stack.call("GET", "/api/v1/auths/", headers=admin.key_auth))[0] == 200
