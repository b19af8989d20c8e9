"""Functions and tools: admin-installed Python (Open WebUI's pipes and tools), stored in
NATS KV (`plugins`), run in sandboxed worker processes (`sandbox`, `sandbox_worker`,
`sandbox_protocol`), answering as a model (`pipes`) or as tools the model calls
(`tool_loop`, which reads the chat streams of `inference_proxy.chat` in process).

The rest of the proxy does not import this package except to wire it up (`app`) and to
route a completion to it (`completions`).
"""
