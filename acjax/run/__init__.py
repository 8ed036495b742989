"""The run layer: everything on the host side of a training run.

Command lines (`cli`, `flags`, `options`, `registry`), the report loop (`loop`), run
directories (`rundir`), resume (`resume`), device and process layouts (`parallel`),
checkpoints (`checkpoint`), loggers, sweeps, saved programs (`programs`), signals
(`interrupt`), plots and renders. The only layer that imports `acjax.cpu`.
"""
