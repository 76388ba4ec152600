"""Write a run's loss/accuracy curves and confusion matrix as PNG files: python scripts/plot.py RUN_DIR."""

from bigru_lightning.app import imports_without_collection, skip_final_collection

with imports_without_collection():  # no garbage collection while the modules load
    from bigru_lightning.figures.plot_command import main

if __name__ == "__main__":
    main()
    skip_final_collection()  # the run is complete: exit without the final garbage collections
