from common.logging import configure_logging
from common.runner import run_until_signalled
from common.settings import load_settings
from retrieval.app import serve
from retrieval.settings import Settings

settings = load_settings(Settings)
configure_logging(settings.log_level)
run_until_signalled(lambda stop: serve(settings), "retrieval")
