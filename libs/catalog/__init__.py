"""Typed access to ragway's JetStream state: file records (KV) and blobs (object store)."""
