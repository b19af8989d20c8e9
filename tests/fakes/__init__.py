"""Fakes of third-party model backends (Ollama, OpenAI-compatible) that speak their real
HTTP protocols on 127.0.0.1, for tests of everything that talks to a model backend."""
