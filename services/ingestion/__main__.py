from common.runner import run_until_signalled
from common.settings import configure
from ingestion.app import Settings, serve

settings = configure(Settings)
run_until_signalled(lambda stop: serve(settings), "ingestion")
