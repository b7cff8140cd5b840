"""Fault injection on real processes, PostgreSQL and Redis (issue 6)."""
