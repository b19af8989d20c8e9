from common.runner import run_until_signalled
from common.settings import configure
from gateway.app import serve
from gateway.settings import Settings

settings = configure(Settings)
run_until_signalled(lambda stop: serve(settings), "gateway")
