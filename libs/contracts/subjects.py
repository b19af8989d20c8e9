"""Every NATS subject ragway uses, named once."""

from __future__ import annotations

# nats.micro service names (also their queue groups); `$SRV.PING.<name>` answers health.
AUTH_SERVICE = "auth"
INFERENCE_SERVICE = "inference-proxy"
INGESTION_SERVICE = "ingestion"
RETRIEVAL_SERVICE = "retrieval"
GATEWAY_SERVICE = "gateway"
BACKEND_SERVICES = (AUTH_SERVICE, INFERENCE_SERVICE, INGESTION_SERVICE, RETRIEVAL_SERVICE)

# auth: request/reply
AUTH_SIGNUP = "ragway.auth.signup"
AUTH_SIGNIN = "ragway.auth.signin"
AUTH_JWT_PARAMS = "ragway.auth.jwt_params"
AUTH_USER_GET = "ragway.auth.user.get"
AUTH_USERS_LIST = "ragway.auth.users.list"
AUTH_USER_UPDATE_ROLE = "ragway.auth.user.update_role"
AUTH_USER_DELETE = "ragway.auth.user.delete"
AUTH_USER_ADD = "ragway.auth.user.add"
AUTH_PASSWORD_UPDATE = "ragway.auth.password.update"
# ends every earlier session (JWT) of one user
AUTH_SIGNOUT = "ragway.auth.signout"
AUTH_KEY_RESOLVE = "ragway.auth.key.resolve"
AUTH_KEY_CREATE = "ragway.auth.key.create"
AUTH_KEY_GET = "ragway.auth.key.get"
AUTH_KEY_DELETE = "ragway.auth.key.delete"
# auth: events (plain publish) that let gateways drop cached principals at once
AUTH_EVENTS = "ragway.auth.events"

# inference-proxy
MODELS_LIST = "ragway.models.list"
CHAT_COMPLETE = "ragway.chat.complete"
CHAT_STREAM = "ragway.chat.stream"
# the gateway publishes here when its client goes away mid-stream: ragway.chat.cancel.<stream_id>
CHAT_CANCEL_PREFIX = "ragway.chat.cancel"


def chat_cancel_subject(stream_id: str) -> str:
    return f"{CHAT_CANCEL_PREFIX}.{stream_id}"


# the Ollama pass-through (see contracts.ollama); cancel: ragway.ollama.cancel.<stream_id>
OLLAMA_PROXY = "ragway.ollama.proxy"
OLLAMA_CANCEL_PREFIX = "ragway.ollama.cancel"


def ollama_cancel_subject(stream_id: str) -> str:
    return f"{OLLAMA_CANCEL_PREFIX}.{stream_id}"


# function models (pipes) and tools, owned by the inference-proxy; `kind` in each request
PLUGINS_SAVE = "ragway.plugins.save"
PLUGINS_LIST = "ragway.plugins.list"
PLUGINS_GET = "ragway.plugins.get"
PLUGINS_DELETE = "ragway.plugins.delete"

# files and ingestion (JetStream)
INGEST_STREAM = "RAGWAY_INGEST"
INGEST_JOBS = "ragway.ingest.jobs"
INGEST_CONSUMER = "ragway-ingestion-workers"
FILES_DELETE = "ragway.files.delete"
# a deleted user's files (records, blobs, vectors) and collections, owned by retrieval
USER_DATA_PURGE = "ragway.users.purge"

# knowledge (owned by retrieval)
KNOWLEDGE_CREATE = "ragway.knowledge.create"
KNOWLEDGE_LIST = "ragway.knowledge.list"
KNOWLEDGE_GET = "ragway.knowledge.get"
KNOWLEDGE_UPDATE = "ragway.knowledge.update"
KNOWLEDGE_FILE_ADD = "ragway.knowledge.file.add"
KNOWLEDGE_FILE_REMOVE = "ragway.knowledge.file.remove"
KNOWLEDGE_RESET = "ragway.knowledge.reset"
KNOWLEDGE_DELETE = "ragway.knowledge.delete"

# retrieval
RETRIEVAL_QUERY = "ragway.retrieval.query"
VECTORS_UPSERT = "ragway.vectors.upsert"
VECTORS_COPY = "ragway.vectors.copy"
VECTORS_DELETE = "ragway.vectors.delete"
# what the store holds for one file (operators, and the fault tests' exactly-once check)
VECTORS_STORED = "ragway.vectors.stored"
