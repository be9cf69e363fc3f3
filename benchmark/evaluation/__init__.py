"""From tables to a board: ``deltas`` (exact fractions of the stored counts), ``tables`` (the board
folder's CSVs, read from the cells or from a board), the two protocols (``tasks_protocol``: per
encoder across tasks, the IIMM paper's; ``models_protocol`` with ``rank_stats``: per task across
encoders, model selection), and ``noise`` (seed noise beside task spread); ``benchmark.cli.board`` evaluates them
and has ``leaderboard`` render the board (the command layer: only it imports ``leaderboard``). No torch."""
