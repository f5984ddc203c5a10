"""Throughput benchmarks of the platform's hot paths, each next to its raw baseline.

Run with `make bench` (or `python -m bench --help`). Everything runs against the real
Kafka and PostgreSQL of deploy/local, on loopback; topics and schemas are named uniquely
per run, and the schemas are dropped at the end.
"""
