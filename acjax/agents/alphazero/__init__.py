"""AlphaZero: search-guided self-play (pgx games) and search-guided acting (gymnax).

`config` (AlphaZeroConfig, Hyperparams, TrainState), `presets`, `search` (mctx root and
recurrent functions from a pgx game or a gymnax environment, `run_search`), `symmetry` (the
board's images for training), `players` (random,
minimax, one-ply lookahead, searched; matches) and `loop` (self-play, targets, replay, SGD:
`make_train`). The command line is `python -m acjax.alphazero` (`acjax.run.cli`).
"""
