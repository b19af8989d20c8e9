"""Settings: one base, nested embedder settings, aliases on the class, one check path,
and misspelt `RAGWAY_*` variables reported by name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from auth.settings import Settings as AuthSettings
from common.settings import (
    ServiceSettings,
    known_variables,
    load_settings,
    unknown_variables,
)
from contracts import subjects
from gateway.settings import Settings as GatewaySettings
from inference_proxy.functions.valves import NETWORK_VALVE
from inference_proxy.settings import Settings as ProxySettings
from ingestion.settings import Settings as IngestionSettings
from retrieval.settings import Settings as RetrievalSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = (AuthSettings, GatewaySettings, ProxySettings, IngestionSettings, RetrievalSettings)


@pytest.mark.parametrize("settings_type", SERVICES)
def test_every_service_reads_the_shared_fields_from_the_same_variables(
    settings_type: type[ServiceSettings],
) -> None:
    settings = load_settings(
        settings_type,
        {
            "RAGWAY_NATS_URL": "nats://a:1, nats://b:2",
            "RAGWAY_BUCKET_PREFIX": "blue",
            "RAGWAY_KV_REPLICAS": "3",
            "RAGWAY_MAX_IN_FLIGHT": "7",
            "RAGWAY_LOG_LEVEL": "debug",
        },
    )
    assert isinstance(settings, ServiceSettings)
    assert settings.nats_servers() == ["nats://a:1", "nats://b:2"]
    assert (settings.bucket_prefix, settings.kv_replicas, settings.max_in_flight) == ("blue", 3, 7)
    assert settings.log_level == "debug"
    with pytest.raises(SystemExit, match="max_in_flight"):
        load_settings(settings_type, {"RAGWAY_MAX_IN_FLIGHT": "0"})


@pytest.mark.parametrize("settings_type", (IngestionSettings, RetrievalSettings))
def test_the_embedder_settings_are_nested_once_and_keep_the_service_defaults(
    settings_type: type[IngestionSettings] | type[RetrievalSettings],
) -> None:
    default = settings_type().embedding
    assert (default.quantized, default.threads) == (True, 1)  # not the library's fp32, all cores
    settings = load_settings(
        settings_type,
        {
            "RAGWAY_CACHE_DIR": "/models",
            "RAGWAY_EMBEDDING_MODEL": "other-model",
            "RAGWAY_EMBEDDING_BATCH_SIZE": "8",
            "RAGWAY_BM25_LANGUAGE": "german",
        },
    )
    embedding = settings.embedding
    assert (embedding.cache_dir, embedding.model, embedding.batch_size) == (
        "/models",
        "other-model",
        8,
    )
    assert embedding.bm25_language == "german"
    assert (embedding.quantized, embedding.threads) == (True, 1)  # untouched fields keep them
    with pytest.raises(SystemExit, match=r"embedding\.threads"):
        load_settings(settings_type, {"RAGWAY_EMBEDDING_THREADS": "-1"})


def test_aliases_are_declared_on_the_class_and_ours_come_first() -> None:
    proxy = load_settings(ProxySettings, {"OPENAI_API_BASE_URL": "http://a/v1"})
    assert proxy.openai_api_base_urls == "http://a/v1"
    proxy = load_settings(
        ProxySettings,
        {"RAGWAY_OPENAI_API_BASE_URLS": "http://ours/v1", "OPENAI_API_BASE_URLS": "http://a/v1"},
    )
    assert proxy.openai_api_base_urls == "http://ours/v1"
    assert load_settings(GatewaySettings, {"RAG_TOP_K": "9"}).rag_top_k == 9
    assert load_settings(IngestionSettings, {"CHUNK_SIZE": "500"}).chunk_size == 500
    assert load_settings(AuthSettings, {"DEFAULT_USER_ROLE": "pending"}).default_user_role == (
        "pending"
    )


def test_checks_run_on_every_construction_and_at_load_by_name() -> None:
    with pytest.raises(SystemExit, match="at least 32 characters"):
        load_settings(AuthSettings, {"RAGWAY_JWT_SECRET": "short"})
    with pytest.raises(ValueError, match="at least 32 characters"):
        AuthSettings(jwt_secret="short")
    with pytest.raises(ValueError, match="at least 32 characters"):
        msgspec.structs.replace(AuthSettings(), jwt_secret="short")
    with pytest.raises(SystemExit, match="chunk_overlap"):
        load_settings(IngestionSettings, {"RAGWAY_CHUNK_OVERLAP": "5000"})


def test_a_misspelt_variable_is_named_with_the_closest_known_one() -> None:
    environ = {
        "RAGWAY_EMBEDING_MODEL": "x",  # misspelt
        "RAGWAY_MAX_IN_FLIGT": "3",  # misspelt
        "RAGWAY_QDRANT_URL": "http://q",  # retrieval's: known, though the gateway ignores it
        "RAGWAY_URL": "http://127.0.0.1:3000",  # the CLI's
        "RAGWAY_COMPLETELY_UNRELATED_THING": "1",
        "OPENAI_API_BASE_URLS": "http://a/v1",  # not ours to judge
    }
    assert unknown_variables(environ) == [
        ("RAGWAY_COMPLETELY_UNRELATED_THING", None),
        ("RAGWAY_EMBEDING_MODEL", "RAGWAY_EMBEDDING_MODEL"),
        ("RAGWAY_MAX_IN_FLIGT", "RAGWAY_MAX_IN_FLIGHT"),
    ]


def test_a_process_logs_each_misspelt_variable_at_start() -> None:
    # what every __main__ does first, in a process of its own (logging is configured once)
    environ = {key: value for key, value in os.environ.items() if not key.startswith("RAGWAY_")}
    environ |= {"RAGWAY_LOG_LEVEL": "info", "RAGWAY_NATS_PROT": "5000"}
    code = (
        "from common.settings import configure; from stack.settings import StackSettings; "
        "print(configure(StackSettings).nats_port)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4222"  # the misspelt one was not taken
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [warning] = [line for line in lines if line.get("event") == "unknown_setting"]
    assert (warning["variable"], warning["closest"]) == ("RAGWAY_NATS_PROT", "RAGWAY_NATS_PORT")
    assert warning["level"] == "warning"


def test_every_variable_the_docs_and_deployments_name_is_one_ragway_reads() -> None:
    texts = [ROOT / "README.md", ROOT / "compose.yaml", *ROOT.glob("docs/**/*.md")]
    texts += [path for path in ROOT.glob("deploy/**/*") if path.is_file()]
    named = {
        name
        for path in texts
        for name in re.findall(r"\bRAGWAY_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="ignore"))
    }
    # the ingestion streams' default names, not variables
    named -= {
        subjects.INGEST_JOBS.stream,
        subjects.INGEST_DEAD_STREAM,
        subjects.advisory_stream(subjects.INGEST_JOBS.stream),
    }
    named -= {NETWORK_VALVE}  # a plugin valve's name, not a variable
    assert named, "no variable found: the scan is broken"
    assert sorted(named - known_variables()) == []
