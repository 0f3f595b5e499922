"""Torch-free streaming runtime: runs exported IDM bundles with onnxruntime and numpy."""
