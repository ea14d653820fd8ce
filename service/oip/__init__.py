"""The Open Inference Protocol (KServe v2) over REST, with Triton's binary tensor data extension.

`datatypes` maps the protocol's tensor datatypes to numpy and onnxruntime types; `types` holds the
wire objects as pydantic models; `codec` turns an /infer body into arrays and arrays into a
response body; `metadata` builds the server and model metadata; `handlers` and `routes` serve them.
"""
