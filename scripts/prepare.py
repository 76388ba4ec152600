"""Convert long-format .csv/.parquet files into memory-mapped stores (see docs/large-data.md)."""

from bigru_lightning.prepare import main

if __name__ == "__main__":
    main()
