"""Test infrastructure shared by the tests and ``bench/``: importable as ``tests.support``.

Conftests keep only fixtures; what a test or a benchmark calls lives here:

* :mod:`tests.support.hosts` — the fixture host names (generated specs, captured real hosts);
* :mod:`tests.support.trees` — small writable synthetic host trees for prep (``build_tree``);
* :mod:`tests.support.kernel` — the kernel emulator that reacts to writes on those trees;
* :mod:`tests.support.faults` — interceptors that make a host write fail as the kernel would;
* :mod:`tests.support.factories` — Inventories built in code for pure-function tests;
* :mod:`tests.support.exposition` — reading a Prometheus exposition back;
* :mod:`tests.support.golden` — the golden exposition of one fixture host (and its regeneration);
* :mod:`tests.support.libvirt`, :mod:`tests.support.prometheus`, :mod:`tests.support.serve` — the
  real peers (libvirtd/QEMU, Prometheus, ``nodeagent serve``) the fixtures start;
* :mod:`tests.support.waiting` — bounded waits.

The tests' Kubernetes (the real control plane, its fault proxy, kubeconfigs) lives in ``tests/k8s/``
(``cluster.py``, ``faultproxy.py``).
"""
