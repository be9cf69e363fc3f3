"""From tables to a board: ``deltas`` (exact fractions of the stored counts), ``tables`` (the board
folder's CSVs, read from the cells or from a board), the two protocols (``tasks_protocol``: per
encoder across tasks, the IIMM paper's; ``models_protocol`` with ``rank_stats``: per task across
encoders, model selection), ``noise`` (seed noise beside task spread) and ``board`` (evaluate and
have ``leaderboard`` render). No torch."""
