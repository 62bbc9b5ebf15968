"""The common model package: settings, XP data containers, the scatter VAE, preprocessing, training and
inference engines, metrics, the one Celery app and the job runner. Used by every service."""
