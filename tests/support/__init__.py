"""Test infrastructure shared by the tests and ``bench/``: importable as ``tests.support``.

Conftests keep only fixtures; everything a test or a benchmark calls lives here:

* :mod:`tests.support.faults` — interceptors that make a host write fail as the kernel would;
"""
