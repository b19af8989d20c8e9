ragway login --api-key "$RAGWAY_API_KEY"     # or `ragway login`: asks email and password
ragway models
ragway ingest ./handbook --knowledge handbook --glob '*.md'
ragway chat -m "$RAGWAY_MODEL" --knowledge handbook "How often are keys rotated?"
ragway files ls
