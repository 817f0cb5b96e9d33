"""genmill's reliability suite: scenarios run against real `genmill serve` and `genmill worker` processes on
SQLite and PostgreSQL, each reported as one row of docs/reliability.md (`python -m bench.reliability`)."""
