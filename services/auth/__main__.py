from auth.app import serve
from auth.settings import Settings
from common.runner import run_until_signalled
from common.settings import configure

settings = configure(Settings)
run_until_signalled(lambda stop: serve(settings), "auth")
