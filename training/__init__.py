"""The training half: synthetic data, Shared-Bottom/OMoE/MMoE in PyTorch, training, ONNX export."""
