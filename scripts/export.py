"""Export a trained checkpoint to ONNX or TorchScript (raw sequences in, class probabilities out)."""

from bigru_lightning.export import main

if __name__ == "__main__":
    main()
