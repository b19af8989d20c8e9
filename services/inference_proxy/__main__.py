from common.dumpable import forbid_dumps
from common.runner import run_until_signalled
from common.settings import configure
from inference_proxy.app import serve
from inference_proxy.settings import Settings

forbid_dumps()  # it holds backend keys: no ptrace, no /proc/<pid>/environ for same-uid peers
settings = configure(Settings)
run_until_signalled(lambda stop: serve(settings), "inference-proxy")
