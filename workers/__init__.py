"""Celery workers: the app, the run-job task, the supervisor and the trainer process."""
