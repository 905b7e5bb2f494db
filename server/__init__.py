"""FastAPI gateway: JSON lap stacks in, next-lap pace corridor, risk and tire health out.

Pipeline per request: validate (schemas) -> preprocess (Data Engine, the same code as training) ->
predict (one backend call: Triton over gRPC, or ONNX Runtime in-process) -> postprocess (seconds,
named classes). `server.main.create_app()` assembles the application.
"""
