"""recsys: the batch side of Amazon Personalize's User-Personalization lifecycle, self-hosted.

The library holds every stage (import, validate, train, evaluate, deploy, batch); the Airflow
DAGs in ``dags/`` and the ``recsys`` command line are thin callers of :mod:`recsys.pipeline`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
