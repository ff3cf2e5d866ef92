"""Shipped search space files (YAML). `tuner tune --space NAME` finds them by name."""
