"""The auth service: users, sessions (JWTs) and API keys, kept in JetStream KV."""
