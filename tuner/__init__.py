"""tuner: find the best way to deploy an ML model, then deploy it."""

__version__ = "0.1.0"
