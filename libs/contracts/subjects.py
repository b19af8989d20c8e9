"""Every NATS subject ragway uses, declared once: its messages, its owner, who sends.

`ALL_SUBJECTS` lists them (the per-service NATS permissions derive from it); a test
checks that no other module spells a subject. Callers and hosts take these declarations:
`await bus.call(AUTH_SIGNIN, request, timeout=...)`, `await host.serve(AUTH_SIGNIN, handler)`.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec

from contracts.auth import (
    AddUserRequest,
    ApiKeyReply,
    AuthEvent,
    JwtParams,
    JwtParamsRequest,
    KeyResolveRequest,
    NamedKeyCreate,
    NamedKeyCreated,
    NamedKeyRef,
    NamedKeys,
    NamedKeysRequest,
    Ok,
    PasswordChangeRequest,
    Principal,
    Session,
    SigninRequest,
    SignupRequest,
    UpdateRoleRequest,
    User,
    UserDetail,
    UserRef,
    UsersList,
    UsersListRequest,
)
from contracts.chat import CompletionJob, StreamAccepted
from contracts.embeddings import (
    EmbedBatch,
    EmbeddedBatch,
    EmbeddingModels,
    EmbeddingModelsRequest,
)
from contracts.endpoint import Declared, Endpoint, Event, WorkQueue
from contracts.files import (
    DeadLetter,
    DeleteFileRequest,
    IngestJob,
    UserDataPurge,
    UserDataPurged,
)
from contracts.functions import (
    FunctionInfo,
    FunctionRecord,
    PluginListRequest,
    PluginRef,
    PluginSave,
    ToolInfo,
    ToolRecord,
    ValvesRef,
    ValvesUpdate,
)
from contracts.groups import (
    Group,
    GroupCreate,
    GroupList,
    GroupListRequest,
    GroupMembersChange,
    GroupRef,
    GroupUpdate,
)
from contracts.knowledge import (
    KnowledgeAccessUpdate,
    KnowledgeBatchReply,
    KnowledgeCreate,
    KnowledgeFileChange,
    KnowledgeFileList,
    KnowledgeFilesBatch,
    KnowledgeFilesQuery,
    KnowledgeList,
    KnowledgeListRequest,
    KnowledgeRef,
    KnowledgeReply,
    KnowledgeUpdate,
    StatusReply,
    SyncCleanupRequest,
    SyncDiffReply,
    SyncDiffRequest,
)
from contracts.models import ModelsReply, ModelsRequest
from contracts.ollama import OllamaProxyAccepted, OllamaProxyRequest
from contracts.retrieval import (
    CopyFileVectors,
    FileVectorsRef,
    IndexStatus,
    IndexStatusRequest,
    RetrievalQuery,
    RetrievalResult,
    StoredChunks,
    UpsertChunks,
    VectorsWritten,
)

# nats.micro service names (also their queue groups); `$SRV.PING.<name>` answers health.
AUTH_SERVICE = "auth"
INFERENCE_SERVICE = "inference-proxy"
INGESTION_SERVICE = "ingestion"
RETRIEVAL_SERVICE = "retrieval"
GATEWAY_SERVICE = "gateway"
BACKEND_SERVICES = (AUTH_SERVICE, INFERENCE_SERVICE, INGESTION_SERVICE, RETRIEVAL_SERVICE)
# the publisher of JetStream advisories
NATS_SERVER = "nats-server"

_AUTH = AUTH_SERVICE
_GATEWAY = (GATEWAY_SERVICE,)


def ping_subject(service: str) -> str:
    """nats.micro's discovery subject: every instance of `service` answers it."""
    return f"$SRV.PING.{service}"


def stats_subject(service: str) -> str:
    """nats.micro's statistics of every instance of `service` (GET /metrics gathers them)."""
    return f"$SRV.STATS.{service}"


def discovery_subjects(service: str) -> tuple[str, ...]:
    """What one nats.micro instance of `service` answers: $SRV.PING, $SRV.PING.<name>,
    $SRV.PING.<name>.<id> (and INFO, STATS the same way)."""
    return ("$SRV.*", f"$SRV.*.{service}", f"$SRV.*.{service}.*")


def metrics_subject(service: str) -> str:
    """Each instance of `service` answers its metrics here (GET /metrics gathers them)."""
    return f"ragway.metrics.{service}"


# --- auth -------------------------------------------------------------------------------

AUTH_SIGNUP = Endpoint("ragway.auth.signup", SignupRequest, Session, _AUTH, _GATEWAY)
AUTH_SIGNIN = Endpoint("ragway.auth.signin", SigninRequest, Session, _AUTH, _GATEWAY)
AUTH_JWT_PARAMS = Endpoint("ragway.auth.jwt_params", JwtParamsRequest, JwtParams, _AUTH, _GATEWAY)
# with the session stamp a gateway checks JWTs against
AUTH_USER_GET = Endpoint("ragway.auth.user.get", UserRef, UserDetail, _AUTH, _GATEWAY)
AUTH_USERS_LIST = Endpoint("ragway.auth.users.list", UsersListRequest, UsersList, _AUTH, _GATEWAY)
AUTH_USER_UPDATE_ROLE = Endpoint(
    "ragway.auth.user.update_role", UpdateRoleRequest, User, _AUTH, _GATEWAY
)
AUTH_USER_DELETE = Endpoint("ragway.auth.user.delete", UserRef, Ok, _AUTH, _GATEWAY)
# an admin adds a user (sign-up may be closed)
AUTH_USER_ADD = Endpoint("ragway.auth.user.add", AddUserRequest, Session, _AUTH, _GATEWAY)
# both end every earlier session (JWT) of the user: its session stamp moves on
AUTH_PASSWORD_UPDATE = Endpoint(
    "ragway.auth.password.update", PasswordChangeRequest, Ok, _AUTH, _GATEWAY
)
AUTH_SIGNOUT = Endpoint("ragway.auth.signout", UserRef, Ok, _AUTH, _GATEWAY)
# an API key by its SHA-256 digest: the raw key never crosses the bus
AUTH_KEY_RESOLVE = Endpoint(
    "ragway.auth.key.resolve", KeyResolveRequest, Principal, _AUTH, _GATEWAY
)
AUTH_KEY_CREATE = Endpoint("ragway.auth.key.create", UserRef, ApiKeyReply, _AUTH, _GATEWAY)
AUTH_KEY_GET = Endpoint("ragway.auth.key.get", UserRef, ApiKeyReply, _AUTH, _GATEWAY)
AUTH_KEY_DELETE = Endpoint("ragway.auth.key.delete", UserRef, Ok, _AUTH, _GATEWAY)
# named, scoped API keys (several per user); a delete publishes `key_revoked`
AUTH_NAMED_KEY_CREATE = Endpoint(
    "ragway.auth.keys.create", NamedKeyCreate, NamedKeyCreated, _AUTH, _GATEWAY
)
AUTH_NAMED_KEYS_LIST = Endpoint(
    "ragway.auth.keys.list", NamedKeysRequest, NamedKeys, _AUTH, _GATEWAY
)
AUTH_NAMED_KEY_DELETE = Endpoint("ragway.auth.keys.delete", NamedKeyRef, Ok, _AUTH, _GATEWAY)
# groups (auth owns them: membership is about users); a membership change publishes
# `user_updated` on AUTH_EVENTS for every member it touches
AUTH_GROUPS_LIST = Endpoint("ragway.auth.groups.list", GroupListRequest, GroupList, _AUTH, _GATEWAY)
AUTH_GROUP_CREATE = Endpoint("ragway.auth.group.create", GroupCreate, Group, _AUTH, _GATEWAY)
AUTH_GROUP_GET = Endpoint("ragway.auth.group.get", GroupRef, Group, _AUTH, _GATEWAY)
AUTH_GROUP_UPDATE = Endpoint("ragway.auth.group.update", GroupUpdate, Group, _AUTH, _GATEWAY)
AUTH_GROUP_USERS_ADD = Endpoint(
    "ragway.auth.group.users.add", GroupMembersChange, Group, _AUTH, _GATEWAY
)
AUTH_GROUP_USERS_REMOVE = Endpoint(
    "ragway.auth.group.users.remove", GroupMembersChange, Group, _AUTH, _GATEWAY
)
AUTH_GROUP_DELETE = Endpoint("ragway.auth.group.delete", GroupRef, Ok, _AUTH, _GATEWAY)
# on every role change, deletion or key revocation, so gateways drop cached principals at once
AUTH_EVENTS = Event(
    "ragway.auth.events", AuthEvent, _AUTH, "from_owner", publishers=(_AUTH,), subscribers=_GATEWAY
)

# --- inference-proxy: models, chat, the Ollama pass-through ------------------------------

_INFERENCE = INFERENCE_SERVICE
MODELS_LIST = Endpoint("ragway.models.list", ModelsRequest, ModelsReply, _INFERENCE, _GATEWAY)
# the backend's OpenAI `chat.completion` JSON, as it sent it
CHAT_COMPLETE = Endpoint("ragway.chat.complete", CompletionJob, msgspec.Raw, _INFERENCE, _GATEWAY)
# answered once the backend accepted; the SSE bytes follow on the job's `stream_inbox`
CHAT_STREAM = Endpoint(
    "ragway.chat.stream", CompletionJob, StreamAccepted, _INFERENCE, _GATEWAY, streams=True
)
# the gateway's client went away mid-stream: ragway.chat.cancel.<stream_id>, empty body
CHAT_CANCEL = Event(
    "ragway.chat.cancel.*",
    type(None),
    _INFERENCE,
    "to_owner",
    publishers=_GATEWAY,
    subscribers=(_INFERENCE,),
)
# see contracts.ollama; the response body follows on the request's `stream_inbox`
OLLAMA_PROXY = Endpoint(
    "ragway.ollama.proxy",
    OllamaProxyRequest,
    OllamaProxyAccepted,
    _INFERENCE,
    _GATEWAY,
    streams=True,
)
OLLAMA_CANCEL = Event(
    "ragway.ollama.cancel.*",
    type(None),
    _INFERENCE,
    "to_owner",
    publishers=_GATEWAY,
    subscribers=(_INFERENCE,),
)

# embeddings of one batch of texts by the named model, wherever it lives (see
# contracts.embeddings); the gateway splits a request into batches
EMBEDDINGS_CREATE = Endpoint(
    "ragway.embeddings.create", EmbedBatch, EmbeddedBatch, _INFERENCE, _GATEWAY
)

# function models (pipes) and tools, owned by the inference-proxy; `kind` in each request.
# A record is a FunctionRecord or a ToolRecord by the request's `kind` (untagged: callers
# relay the reply's bytes, they cannot decode it as a union).
PluginRecord = FunctionRecord | ToolRecord
PLUGINS_SAVE: Endpoint[PluginSave, PluginRecord] = Endpoint(
    "ragway.plugins.save", PluginSave, cast(Any, PluginRecord), _INFERENCE, _GATEWAY
)
PLUGINS_LIST = Endpoint(
    "ragway.plugins.list",
    PluginListRequest,
    list[FunctionInfo | ToolInfo],
    _INFERENCE,
    _GATEWAY,
)
# admins get the record with its source; those it is granted to, its info without
PLUGINS_GET: Endpoint[PluginRef, PluginRecord | FunctionInfo | ToolInfo] = Endpoint(
    "ragway.plugins.get",
    PluginRef,
    cast(Any, PluginRecord | FunctionInfo | ToolInfo),
    _INFERENCE,
    _GATEWAY,
)
PLUGINS_DELETE = Endpoint("ragway.plugins.delete", PluginRef, bool, _INFERENCE, _GATEWAY)
# valves (admins only): the stored values, the Valves class's JSON schema, a new set
PLUGINS_VALVES_GET = Endpoint(
    "ragway.plugins.valves.get", ValvesRef, dict[str, Any], _INFERENCE, _GATEWAY
)
PLUGINS_VALVES_SPEC = Endpoint(
    "ragway.plugins.valves.spec", ValvesRef, dict[str, Any], _INFERENCE, _GATEWAY
)
PLUGINS_VALVES_UPDATE = Endpoint(
    "ragway.plugins.valves.update", ValvesUpdate, dict[str, Any], _INFERENCE, _GATEWAY
)

# --- files and ingestion (JetStream) -----------------------------------------------------

INGEST_JOBS = WorkQueue(
    "ragway.ingest.jobs",
    IngestJob,
    INGESTION_SERVICE,
    # the gateway queues uploads; workers hand out a big file's dense ranges
    publishers=(GATEWAY_SERVICE, INGESTION_SERVICE),
    stream="RAGWAY_INGEST",
    consumer="ragway-ingestion-workers",
)


def max_deliveries_subject(stream: str, consumer: str) -> str:
    """JetStream's advisory when a message of `stream` ran out of deliveries to `consumer`."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


# a job that kept failing: its file is marked failed (see ingestion.worker); the advisory
# is kept in a stream of its own (`advisory_stream`), so none is lost while no worker runs
INGEST_MAX_DELIVERIES = Event(
    max_deliveries_subject(INGEST_JOBS.stream, INGEST_JOBS.consumer),
    dict[str, Any],
    INGESTION_SERVICE,
    "to_owner",
    publishers=(NATS_SERVER,),
    subscribers=(INGESTION_SERVICE,),
)
INGEST_ADVISORY_CONSUMER = "ragway-ingestion-advisories"


def advisory_stream(ingest_stream: str) -> str:
    """The stream that keeps the job consumer's max-deliveries advisories."""
    return f"{ingest_stream}_ADVISORIES"


# jobs that failed for good or ran out of deliveries, one per file (`.<file_id>`), with the
# reason: kept in the stream INGEST_DEAD_STREAM, listed and retried by admins (gateway)
INGEST_DEAD_LETTERS = Event(
    "ragway.ingest.dead.*",
    DeadLetter,
    INGESTION_SERVICE,
    "from_owner",
    publishers=(INGESTION_SERVICE,),
    subscribers=(GATEWAY_SERVICE,),
)
INGEST_DEAD_STREAM = "RAGWAY_INGEST_DEAD"

# --- retrieval: vectors, search, knowledge ------------------------------------------------

_RETRIEVAL = RETRIEVAL_SERVICE
_INGESTION = (INGESTION_SERVICE,)
# deleting a file removes its record, blob and vectors: retrieval owns the vectors
FILES_DELETE = Endpoint("ragway.files.delete", DeleteFileRequest, Ok, _RETRIEVAL, _GATEWAY)
# a deleted user's files (records, blobs, vectors, links) and own collections
USER_DATA_PURGE = Endpoint(
    "ragway.users.purge", UserDataPurge, UserDataPurged, _RETRIEVAL, _GATEWAY
)
RETRIEVAL_QUERY = Endpoint(
    "ragway.retrieval.query", RetrievalQuery, RetrievalResult, _RETRIEVAL, _GATEWAY
)
VECTORS_UPSERT = Endpoint(
    "ragway.vectors.upsert", UpsertChunks, VectorsWritten, _RETRIEVAL, _INGESTION
)
VECTORS_COPY = Endpoint(
    "ragway.vectors.copy", CopyFileVectors, VectorsWritten, _RETRIEVAL, _INGESTION
)
# ingestion workers, and the gateway before it queues a file's re-processing
VECTORS_DELETE = Endpoint(
    "ragway.vectors.delete",
    FileVectorsRef,
    VectorsWritten,
    _RETRIEVAL,
    (*_INGESTION, GATEWAY_SERVICE),
)
# which collection searches use, which model built it, a rebuild's progress (admins)
RETRIEVAL_INDEX = Endpoint(
    "ragway.retrieval.index", IndexStatusRequest, IndexStatus, _RETRIEVAL, _GATEWAY
)
# what the store holds for one file (operators, and the fault tests' exactly-once check)
VECTORS_STORED = Endpoint("ragway.vectors.stored", FileVectorsRef, StoredChunks, _RETRIEVAL, ())

# ragway's own embedding model (the one retrieval searches with), for the inference-proxy:
# which it is (listed in /api/models), and a batch embedded by it
EMBEDDINGS_LOCAL = Endpoint(
    "ragway.embeddings.local", EmbedBatch, EmbeddedBatch, _RETRIEVAL, (INFERENCE_SERVICE,)
)
EMBEDDING_MODELS = Endpoint(
    "ragway.embeddings.models",
    EmbeddingModelsRequest,
    EmbeddingModels,
    _RETRIEVAL,
    (INFERENCE_SERVICE,),
)

KNOWLEDGE_CREATE = Endpoint(
    "ragway.knowledge.create", KnowledgeCreate, KnowledgeReply, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_LIST = Endpoint(
    "ragway.knowledge.list", KnowledgeListRequest, KnowledgeList, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_GET = Endpoint("ragway.knowledge.get", KnowledgeRef, KnowledgeReply, _RETRIEVAL, _GATEWAY)
KNOWLEDGE_UPDATE = Endpoint(
    "ragway.knowledge.update", KnowledgeUpdate, KnowledgeReply, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_ACCESS_UPDATE = Endpoint(
    "ragway.knowledge.access.update", KnowledgeAccessUpdate, KnowledgeReply, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_FILE_ADD = Endpoint(
    "ragway.knowledge.file.add", KnowledgeFileChange, KnowledgeReply, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_FILE_REMOVE = Endpoint(
    "ragway.knowledge.file.remove", KnowledgeFileChange, KnowledgeReply, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_RESET = Endpoint(
    "ragway.knowledge.reset", KnowledgeRef, KnowledgeReply, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_DELETE = Endpoint("ragway.knowledge.delete", KnowledgeRef, Ok, _RETRIEVAL, _GATEWAY)
# a page of a collection's files; many files added at once; Open WebUI's incremental sync
KNOWLEDGE_FILES = Endpoint(
    "ragway.knowledge.files", KnowledgeFilesQuery, KnowledgeFileList, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_FILES_BATCH = Endpoint(
    "ragway.knowledge.files.batch",
    KnowledgeFilesBatch,
    KnowledgeBatchReply,
    _RETRIEVAL,
    _GATEWAY,
)
KNOWLEDGE_SYNC_DIFF = Endpoint(
    "ragway.knowledge.sync.diff", SyncDiffRequest, SyncDiffReply, _RETRIEVAL, _GATEWAY
)
KNOWLEDGE_SYNC_CLEANUP = Endpoint(
    "ragway.knowledge.sync.cleanup", SyncCleanupRequest, StatusReply, _RETRIEVAL, _GATEWAY
)

# --- the table ----------------------------------------------------------------------------

ALL_SUBJECTS: tuple[Declared, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, Endpoint | Event | WorkQueue)
)


def endpoints_of(service: str) -> tuple[Endpoint[Any, Any], ...]:
    """The request/reply subjects `service` serves."""
    return tuple(
        item for item in ALL_SUBJECTS if isinstance(item, Endpoint) and item.owner == service
    )
