from common.runner import run_until_signalled
from common.settings import configure
from retrieval.app import serve
from retrieval.settings import Settings

settings = configure(Settings)
run_until_signalled(lambda stop: serve(settings), "retrieval")
