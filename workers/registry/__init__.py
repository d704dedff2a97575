"""The worker registry: one database row per worker, renewed by its liveness tick from a writer thread."""
