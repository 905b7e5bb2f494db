"""Local serving tooling behind `strategist serve`, `strategist triton` and `strategist client`.

    local_stack      what `strategist serve` does: export when stale, start Triton, run the gateway
    triton_launcher  LocalTriton: the nvidia-pytriton `tritonserver` on a model repository, no Docker
    race_requests    /predict bodies from a race folder (client, benchmarks, tests)
    example_payload  the committed examples/predict_request.json, from a simulated race

None of this is part of the gateway image: server/ is exactly what that image runs. This package
imports export/ and the simulator freely; the gateway never imports it.
"""
