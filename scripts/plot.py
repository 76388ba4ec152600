"""Write a run's loss/accuracy curves and confusion matrix as PNG files: python scripts/plot.py RUN_DIR."""

from bigru_lightning.figures.plot_command import main

if __name__ == "__main__":
    main()
