"""Search fit.py's options with an Optuna study (see docs/sweeps.md)."""

from bigru_lightning.sweeps import main

if __name__ == "__main__":
    main()
