import os

import requests
from openai import OpenAI

url = os.environ["RAGWAY_URL"]
headers = {"Authorization": f"Bearer {os.environ['RAGWAY_API_KEY']}"}


def call(method, path, **kwargs):
    response = requests.request(method, url + path, headers=headers, timeout=120, **kwargs)
    response.raise_for_status()
    return response.json()


# A collection with the handbook in it (private: no grants given) ...
with open("handbook.md", "rb") as document:
    file = call("POST", "/api/v1/files/", files={"file": document})
knowledge = call("POST", "/api/v1/knowledge/create", json={"name": "handbook"})
call("POST", f"/api/v1/knowledge/{knowledge['id']}/file/add", json={"file_id": file["id"]})

# ... a workspace model: a base model, a system prompt, parameters and that knowledge ...
call(
    "POST",
    "/api/v1/models/create",
    json={
        "id": "handbook-helper",
        "base_model_id": os.environ.get("RAGWAY_MODEL", "llama3.2"),
        "name": "Handbook helper",
        "meta": {"knowledge": [{"id": knowledge["id"], "type": "collection"}]},
        "params": {"system": "Answer from the handbook. Today is {{CURRENT_DATE}}.", "temperature": 0.2},
        # who else may use it; absent means only you (and admins)
        "access_grants": [{"principal_type": "user", "principal_id": "*", "permission": "read"}],
    },
)

# ... used by its id from any OpenAI client; the handbook is searched as if passed in `files`.
client = OpenAI(base_url=url + "/api", api_key=os.environ["RAGWAY_API_KEY"])
reply = client.chat.completions.create(
    model="handbook-helper",
    messages=[{"role": "user", "content": "How often are keys rotated?"}],
)
print(reply.choices[0].message.content)
for source in reply.model_extra["sources"]:
    print("source:", source["source"]["name"])
