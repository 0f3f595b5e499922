"""ONNX export of IDM checkpoints: streaming bundles with a manifest (torch and onnx needed)."""
