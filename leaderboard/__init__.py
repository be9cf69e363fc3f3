"""The leaderboard: markdown tables, CSVs of every number and scatter plots, rendered from the frames
``benchmark.cli.board`` reads and evaluates (this package imports nothing from ``benchmark``)."""
from .render import render

__all__ = ["render"]
