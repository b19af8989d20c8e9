from common.logging import configure_logging
from common.runner import run_until_signalled
from common.settings import load_settings
from inference_proxy.app import serve
from inference_proxy.settings import ENV_ALIASES, Settings

settings = load_settings(Settings, aliases=ENV_ALIASES)
configure_logging(settings.log_level)
run_until_signalled(lambda stop: serve(settings), "inference-proxy")
