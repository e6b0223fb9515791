"""Test harness shared by the tests of every package and the benchmarks: real components started here.

- :mod:`testkit.services`: free ports, ``modelberth serve NAME`` as a real process, waiting for readiness
- :mod:`testkit.artifacts`: a small real iris model version published through the store
- :mod:`testkit.store`: small versions from the golden card, without scikit-learn
- :mod:`testkit.registry`: a real OCI registry (Debian's docker-registry), with basic auth, tokens or TLS
- :mod:`testkit.prometheus`: a real Prometheus scraping given targets every second
- :mod:`testkit.redis_server`: a real redis-server for auth's shared state
- :mod:`testkit.chart`: the Helm chart rendered with Helm's own engine

The root ``conftest.py`` wraps these as pytest fixtures; benchmarks import them directly (never conftest:
an import contract in ``pyproject.toml`` keeps it so).
"""
