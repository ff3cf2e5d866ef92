"""Ray: the only package of tuner that imports it. The cluster, exclusive cores, a pool of
pinned replica actors, and running one trial with its time-out and failure handling."""

from tuner.runner.cluster import RayCluster
from tuner.runner.trial import TrialFailed, TrialRunner

__all__ = ["RayCluster", "TrialFailed", "TrialRunner"]
