"""MLflow tracking: the naming contract, a client by run id, the model store, tracked training.

- :mod:`~ecg_sweep.tracking.contract`: every tag, run name, artifact path and registered name;
- :mod:`~ecg_sweep.tracking.client`: :class:`Tracker`, an explicit-run-id ``MlflowClient``;
- :mod:`~ecg_sweep.tracking.model_store`: the one model logger and the model loaders;
- :mod:`~ecg_sweep.tracking.training_run`: ``train_and_log`` and the final evaluation of a run.

Only the client is imported here: it needs neither torch nor the models (``ecg-sweep ui`` and
``data`` commands stay quick to start).
"""

from ecg_sweep.tracking.client import DEFAULT_TRACKING_URI, Tracker, mask_url, resolve_tracking_uri

__all__ = ["DEFAULT_TRACKING_URI", "Tracker", "mask_url", "resolve_tracking_uri"]
