import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["RAGWAY_URL"] + "/api", api_key=os.environ["RAGWAY_API_KEY"])
model = os.environ.get("RAGWAY_MODEL", "llama3.2")

reply = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Why is the sky blue?"}]
)
print(reply.choices[0].message.content)

stream = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Tell me a story."}], stream=True
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
