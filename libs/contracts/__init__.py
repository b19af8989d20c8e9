"""The wire vocabulary of ragway: msgspec Structs and subject names, nothing else."""
