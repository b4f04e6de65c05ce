"""``python -m wxcube``: the same as the ``wxcube`` command."""

from .cli import main

if __name__ == "__main__":
    main()
