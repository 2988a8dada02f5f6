"""recsys: the batch side of Amazon Personalize's User-Personalization lifecycle, self-hosted.

The library holds every stage (import, validate, train, evaluate, deploy, batch); the Airflow
DAGs in ``dags/`` and the ``recsys`` command line are thin callers of :mod:`recsys.pipeline`.
"""

import os

# OpenMP threads that wait for work should sleep, not spin. With spinning (libgomp's default)
# torch ran 20-40x slower whenever another process shared the cores, which is the normal case
# on an Airflow worker running several tasks, or beside the scheduler. It must be set before
# torch loads libgomp, and importing anything from recsys runs this first. An explicit
# OMP_WAIT_POLICY in the environment wins. Measured in docs/BENCHMARKS.md ("OpenMP wait policy").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["__version__"]
