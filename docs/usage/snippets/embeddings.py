import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["RAGWAY_URL"] + "/api", api_key=os.environ["RAGWAY_API_KEY"])
model = "all-minilm-l6-v2"  # ragway's own; a backend's embedding model works the same way

texts = [
    "The platypus team rotates API keys every ninety days.",
    "Bread needs flour, water, salt and yeast.",
]
documents = client.embeddings.create(model=model, input=texts)
question = client.embeddings.create(model=model, input="How often are keys rotated?")

# the vectors have unit length: a dot product is their cosine similarity
query = question.data[0].embedding
scores = [sum(q * d for q, d in zip(query, item.embedding, strict=True)) for item in documents.data]
print(texts[scores.index(max(scores))])
print(len(query), "dimensions,", documents.usage.prompt_tokens, "tokens")
