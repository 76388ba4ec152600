"""Train, test and report a BiGRU classifier (the tutorial's run with no arguments)."""

from bigru_lightning.app import imports_without_collection, skip_final_collection

with imports_without_collection():  # no garbage collection while the modules load
    from bigru_lightning.cli import main

if __name__ == "__main__":
    main()
    skip_final_collection()  # the run is complete: exit without the final garbage collections
