"""What the tests and the benchmarks (scripts/bench) share to run things of their own.

- ``processes``: a group of processes started and stopped by PID (only its own), their logs,
  ``free_port``, ``listening``, ``answers`` and the ``wait_until`` loop;
- ``servers``: a redis-server and a PostgreSQL server (initdb) of one's own;
- ``services``: the machine's shared servers the tests talk to (``require_*``).
"""
