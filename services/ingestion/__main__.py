from common.logging import configure_logging
from common.runner import run_until_signalled
from common.settings import load_settings
from ingestion.app import SETTINGS_ALIASES, Settings, serve

settings = load_settings(Settings, aliases=SETTINGS_ALIASES)
configure_logging(settings.log_level)
run_until_signalled(lambda stop: serve(settings), "ingestion")
