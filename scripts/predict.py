"""Predict class probabilities for a file of sequences with a trained checkpoint."""

from bigru_lightning.predict import main

if __name__ == "__main__":
    main()
