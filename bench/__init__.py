"""The benchmark harness: figures for Continuum on real Postgres, Redis and Celery processes.

Run it as ``python -m bench [--quick] [--only NAME ...] [--json PATH]``; see ``bench/RESULTS.md``
for the latest full-size figures. It is not part of the test suite: it prints figures.
"""
