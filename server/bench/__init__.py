"""Benchmarks behind ``hexpsi bench``: medians of several runs, never timed tests.

Each module in this package that defines ``WORKLOADS`` (a list of
:class:`hexpsi.server.bench.harness.Workload`) is picked up by the runner.
"""
