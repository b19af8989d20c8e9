import os

import requests

url = os.environ["RAGWAY_URL"]
headers = {"Authorization": f"Bearer {os.environ['RAGWAY_API_KEY']}"}


def call(method, path, **kwargs):
    response = requests.request(method, url + path, headers=headers, timeout=120, **kwargs)
    response.raise_for_status()
    return response.json()


# Upload a document (processing runs in the background) ...
with open("handbook.md", "rb") as document:
    file = call("POST", "/api/v1/files/", files={"file": document})

# ... put it in a private knowledge collection ...
knowledge = call(
    "POST",
    "/api/v1/knowledge/create",
    json={"name": "handbook", "description": "Team handbook", "access_control": {}},
)
call("POST", f"/api/v1/knowledge/{knowledge['id']}/file/add", json={"file_id": file["id"]})

# ... and ask about it: ragway waits for a file that is still being processed.
answer = call(
    "POST",
    "/api/chat/completions",
    json={
        "model": os.environ.get("RAGWAY_MODEL", "llama3.2"),
        "messages": [{"role": "user", "content": "How often are keys rotated?"}],
        "files": [{"type": "collection", "id": knowledge["id"]}],
    },
)
print(answer["choices"][0]["message"]["content"])
for source in answer["sources"]:
    for metadata in source["metadata"]:
        print("source:", metadata["name"])
