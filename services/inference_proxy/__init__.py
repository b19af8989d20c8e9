"""inference-proxy: lists models and runs chat completions against Ollama and
OpenAI-compatible backends, streaming answers back over NATS."""
