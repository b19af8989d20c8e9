from auth.app import serve
from auth.settings import ALIASES, Settings
from common.logging import configure_logging
from common.runner import run_until_signalled
from common.settings import load_settings

settings = load_settings(Settings, aliases=ALIASES)
configure_logging(settings.log_level)
run_until_signalled(lambda stop: serve(settings), "auth")
