"""Train, test and report a BiGRU classifier (the tutorial's run with no arguments)."""

from bigru_lightning.cli import main

if __name__ == "__main__":
    main()
