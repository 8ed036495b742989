"""`python -m acjax.render`: the command line of `acjax.run.render`."""

from acjax.run.render import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
