-- wrk script: POST one /predict body from a file (WRK_BODY, default examples/predict_request.json).
-- wrk is a Debian package (apt-get update && apt-get install -y wrk); used by benchmarks only.
local path = os.getenv("WRK_BODY") or "examples/predict_request.json"
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"
