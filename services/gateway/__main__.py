from common.logging import configure_logging
from common.runner import run_until_signalled
from common.settings import load_settings
from gateway.app import serve
from gateway.settings import Settings

# Open WebUI's names for the same settings, accepted too.
ALIASES = {
    "rag_top_k": ("RAG_TOP_K",),
    "file_max_size_mb": ("RAG_FILE_MAX_SIZE",),
    "env": ("ENV",),
}

settings = load_settings(Settings, aliases=ALIASES)
configure_logging(settings.log_level)
run_until_signalled(lambda stop: serve(settings), "gateway")
