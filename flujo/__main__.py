"""``python -m flujo``: the ``flujo`` command, for environments without its script."""

from flujo.cli.app import main

if __name__ == "__main__":
    main()
