from common.runner import run_until_signalled
from common.settings import configure
from inference_proxy.app import serve
from inference_proxy.settings import Settings

settings = configure(Settings)
run_until_signalled(lambda stop: serve(settings), "inference-proxy")
