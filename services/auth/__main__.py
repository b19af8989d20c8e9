from auth.app import serve
from auth.settings import Settings
from common.logging import configure_logging
from common.runner import run_until_signalled
from common.settings import load_settings

# Open WebUI's names work too, so an existing deployment keeps its secret and role policy.
settings = load_settings(
    Settings,
    aliases={"jwt_secret": ("WEBUI_SECRET_KEY",), "default_user_role": ("DEFAULT_USER_ROLE",)},
)
configure_logging(settings.log_level)
run_until_signalled(lambda stop: serve(settings), "auth")
