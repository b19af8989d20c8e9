"""The keys Open WebUI 0.12.4 answers with, transcribed from its own response models
(pydantic classes in `open_webui/models/*.py` and `open_webui/routers/*.py` of the
0.12.4 wheel; the file each comes from is named beside it). A ragway reply must carry at
least these keys: clients parse them; extra keys are allowed.
"""

from __future__ import annotations

from typing import Any

# main.py get_app_version
VERSION = {"version", "deployment_id"}
# main.py get_app_config (anonymous caller)
CONFIG = {"status", "name", "version", "default_locale", "oauth", "features"}
CONFIG_FEATURES = {
    "auth",
    "auth_trusted_header",
    "enable_ldap",
    "enable_signup",
    "enable_login_form",
    "enable_websocket",
}
# models/files.py FileModelResponse
FILE = {"id", "user_id", "hash", "filename", "data", "meta", "created_at", "updated_at"}
# models/files.py FileMetadataResponse
FILE_METADATA = {"id", "hash", "meta", "created_at", "updated_at"}
# models/files.py FileListResponse, models/knowledge.py KnowledgeListResponse
PAGED = {"items", "total"}
# models/knowledge.py KnowledgeModel + KnowledgeResponse.files
KNOWLEDGE = {
    "id",
    "user_id",
    "name",
    "description",
    "meta",
    "created_at",
    "updated_at",
}
# routers/knowledge.py KnowledgeFilesResponse (KnowledgeResponse + files, write_access)
KNOWLEDGE_FILES = KNOWLEDGE | {"files", "write_access"}
# models/knowledge.py KnowledgeFileListResponse
KNOWLEDGE_FILE_LIST = {"items", "total"}
# models/knowledge.py FileUserResponse (FileModelResponse + directory fields)
KNOWLEDGE_FILE_ITEM = FILE
# routers/knowledge.py SyncDiffResponse
SYNC_DIFF = {"added", "modified", "deleted", "mkdir", "rmdir", "unmodified_count", "directory_map"}
SYNC_ADDED = {"filename", "path"}
SYNC_MODIFIED = {"filename", "path", "stale_file_id"}
SYNC_DELETED = {"file_id", "filename"}
# routers/knowledge.py sync_knowledge_cleanup
SYNC_CLEANUP = {"status"}
# models/chats.py ChatTitleIdResponse
CHAT_TITLE_ID = {"id", "title", "updated_at", "created_at"}
# routers/retrieval.py process_text
PROCESS_TEXT = {"status", "collection_name", "content"}
# routers/files.py update_file_data_content_by_id
FILE_CONTENT = {"content"}
# openai's CreateEmbeddingResponse (routers/openai.py forwards it unchanged)
EMBEDDINGS = {"object", "data", "model", "usage"}
EMBEDDING = {"object", "index", "embedding"}
EMBEDDING_USAGE = {"prompt_tokens", "total_tokens"}


def missing(expected: set[str], value: Any) -> set[str]:
    """The expected keys `value` lacks (all of them when it is not an object)."""
    if not isinstance(value, dict):
        return set(expected)
    return expected - set(value)
