"""Provider agent, Celery workers and the PyTorch job runtime."""
