"""Newsletter: a small table of subscribers, and the fan-out and batching tasks that mail them."""
