"""`python -m acjax.plot`: the command line of `acjax.run.plot`."""

from acjax.run.plot import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
