"""taskruns: a pluggable Django app that tracks the runs of coding-agent tasks."""

__version__ = "0.1.0"
