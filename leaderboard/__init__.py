"""The leaderboard: markdown tables, CSVs of every number and scatter plots from a results folder."""
from .render import build

__all__ = ["build"]
