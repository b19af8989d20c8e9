auth="Authorization: Bearer $RAGWAY_API_KEY"
json="Content-Type: application/json"
id_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

# Embeddings, OpenAI's request and reply (add "encoding_format": "base64" for packed floats)
curl -s "$RAGWAY_URL/api/embeddings" -H "$auth" -H "$json" \
  -d '{"model": "all-minilm-l6-v2", "input": ["The first text", "The second text"]}'

# Upload files, then add them all to a collection in one call: each gets its outcome
one=$(curl -s "$RAGWAY_URL/api/v1/files/" -H "$auth" -F "file=@handbook.md" | id_of)
two=$(curl -s "$RAGWAY_URL/api/v1/files/" -H "$auth" -F "file=@handbook/keys.md" | id_of)
kb=$(curl -s "$RAGWAY_URL/api/v1/knowledge/create" -H "$auth" -H "$json" \
  -d '{"name": "handbook"}' | id_of)
curl -s "$RAGWAY_URL/api/v1/knowledge/$kb/files/batch/add" -H "$auth" -H "$json" \
  -d '[{"file_id": "'"$one"'"}, {"file_id": "'"$two"'"}, {"file_id": "no-such-file"}]'
