"""Commands: the CLI and what it runs (worker, demo, simulate, offline check, tail, broker)."""
