"""Throughput of the project's Trainer path against plain PyTorch and DataLoader (see --help)."""

from bigru_lightning.benchmark import main

if __name__ == "__main__":
    main()
