"""The serving half: onnxruntime behind FastAPI. Never imports torch."""
