"""The retrieval service: owns the vector store, knowledge collections and scoped search."""
