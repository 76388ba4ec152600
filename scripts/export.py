"""Export a trained checkpoint to ONNX or TorchScript (raw sequences in, class probabilities out)."""

from bigru_lightning.app import skip_final_collection
from bigru_lightning.export import main

if __name__ == "__main__":
    main()
    skip_final_collection()  # the run is complete: exit without the final garbage collections
