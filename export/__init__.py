"""Export: PyTorch checkpoint -> ONNX (dynamic batch) -> TensorRT FP16 plan / ONNX Runtime CPU,
and the Triton model repository that serves them.

Modules, one concern each:
    sample_inputs       real-looking input stacks in physical units (and dataset shards when present)
    onnx_export         torch -> ONNX with the contract's tensor names; structural check; ORT parity
    mixed_precision     FP32 ONNX -> FP16-compute ONNX with FP32 I/O (for strongly typed TensorRT)
    tensorrt_build      TensorRT engine build (TensorRT 10 and 11) and engine execution for parity
    parity              output comparisons and the FP16 tolerances
    triton_config       config.pbtxt text for both Triton models, and its check against an ONNX file
    triton_python_model the Python-backend model (copied to <repo>/virtual_strategist_cpu/<ver>/model.py)
    repository          builds the model repository from a checkpoint (CPU and GPU models)

Heavy libraries (torch, onnx, onnxruntime, tensorrt) are imported inside the modules that need them,
so `import export` stays cheap.
"""
