"""The `requests` snippets of Open WebUI's own API guide ("API Endpoints", section
"Retrieval Augmented Generation", docs.openwebui.com/getting-started/api-endpoints), run
verbatim against ragway: only the guide's base URL is pointed at the test server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.live import OPENAI_MODEL, Account, Stack, wait_completed

GUIDE_BASE_URL = "http://localhost:3000"

# Copied unchanged from the guide (each function is one of its "Python Example" blocks).
GUIDE_SNIPPETS = """
import requests

def upload_file(token, file_path):
    url = 'http://localhost:3000/api/v1/files/'
    headers = {
        'Authorization': f'Bearer {token}',
        'Accept': 'application/json'
    }
    files = {'file': open(file_path, 'rb')}
    response = requests.post(url, headers=headers, files=files)
    return response.json()

import requests

def add_file_to_knowledge(token, knowledge_id, file_id):
    url = f'http://localhost:3000/api/v1/knowledge/{knowledge_id}/file/add'
    headers = {
        'Authorization': f'Bearer {token}',
        'Content-Type': 'application/json'
    }
    data = {'file_id': file_id}
    response = requests.post(url, headers=headers, json=data)
    return response.json()

import requests

def chat_with_file(token, model, query, file_id):
    url = 'http://localhost:3000/api/chat/completions'
    headers = {
        'Authorization': f'Bearer {token}',
        'Content-Type': 'application/json'
    }
    payload = {
        'model': model,
        'messages': [{'role': 'user', 'content': query}],
        'files': [{'type': 'file', 'id': file_id}]
    }
    response = requests.post(url, headers=headers, json=payload)
    return response.json()

import requests

def chat_with_collection(token, model, query, collection_id):
    url = 'http://localhost:3000/api/chat/completions'
    headers = {
        'Authorization': f'Bearer {token}',
        'Content-Type': 'application/json'
    }
    payload = {
        'model': model,
        'messages': [{'role': 'user', 'content': query}],
        'files': [{'type': 'collection', 'id': collection_id}]
    }
    response = requests.post(url, headers=headers, json=payload)
    return response.json()
"""


def guide_functions(url: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(GUIDE_SNIPPETS.replace(GUIDE_BASE_URL, url), namespace)
    return namespace


async def test_the_guides_upload_knowledge_and_rag_chat_snippets_work_unchanged(
    ragway: Stack, user: Account, tmp_path: Path
) -> None:
    guide = guide_functions(ragway.url)
    token = user.api_key
    document = tmp_path / "lighthouse.md"
    document.write_text("# Lighthouse\n\nThe keeper lights the lamp at dusk with a brass key.\n")

    uploaded = await asyncio.to_thread(guide["upload_file"], token, str(document))
    assert uploaded["filename"] == "lighthouse.md" and uploaded["data"]["status"] == "pending"
    file_id = uploaded["id"]

    status, collection = await ragway.call(
        "POST",
        "/api/v1/knowledge/create",
        headers=user.key_auth,
        json={"name": "coast", "description": "", "access_control": {}},
    )
    assert status == 200, collection
    added = await asyncio.to_thread(
        guide["add_file_to_knowledge"], token, collection["id"], file_id
    )
    assert file_id in added["data"]["file_ids"]
    assert [f["id"] for f in added["files"]] == [file_id]

    # asked at once: ragway waits for the file still being processed (Open WebUI did not)
    by_file = await asyncio.to_thread(
        guide["chat_with_file"], token, OPENAI_MODEL, "When is the lamp lit?", file_id
    )
    assert "lights the lamp at dusk" in by_file["choices"][0]["message"]["content"]
    assert by_file["sources"][0]["source"]["id"] == file_id

    await wait_completed(ragway, user, file_id)
    by_collection = await asyncio.to_thread(
        guide["chat_with_collection"], token, OPENAI_MODEL, "What opens the lamp?", collection["id"]
    )
    assert "brass key" in by_collection["choices"][0]["message"]["content"]
    [source] = by_collection["sources"]
    assert source["source"]["type"] == "collection" and source["source"]["id"] == collection["id"]
    assert source["metadata"][0]["file_id"] == file_id
