"""`make bench`: numbers, not pass/fail (run as python -m mpseal_tools.bench)."""
