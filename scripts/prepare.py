"""Convert long-format .csv/.parquet files into memory-mapped stores (see docs/large-data.md)."""

from bigru_lightning.app import imports_without_collection, skip_final_collection

with imports_without_collection():  # no garbage collection while the modules load
    from bigru_lightning.prepare import main

if __name__ == "__main__":
    main()
    skip_final_collection()  # the run is complete: exit without the final garbage collections
