# The models you can use
curl -s "$RAGWAY_URL/api/models" -H "Authorization: Bearer $RAGWAY_API_KEY"

# One answer (OpenAI-compatible)
curl -s "$RAGWAY_URL/api/chat/completions" \
  -H "Authorization: Bearer $RAGWAY_API_KEY" -H "Content-Type: application/json" \
  -d '{"model": "'"$RAGWAY_MODEL"'", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}'

# Streamed: server-sent events `data: {...}`, ending with `data: [DONE]`
curl -sN "$RAGWAY_URL/api/chat/completions" \
  -H "Authorization: Bearer $RAGWAY_API_KEY" -H "Content-Type: application/json" \
  -d '{"model": "'"$RAGWAY_MODEL"'", "stream": true, "messages": [{"role": "user", "content": "Tell me a story."}]}'

# Upload a document for RAG: the reply carries its id
curl -s "$RAGWAY_URL/api/v1/files/" -H "Authorization: Bearer $RAGWAY_API_KEY" -F "file=@handbook.md"
