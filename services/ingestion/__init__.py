"""The ingestion service: turns uploaded files into text chunks (then embeddings)."""
