"""genmill benchmarks: `python -m bench` runs every workload against its baseline (see bench/README.md)."""
