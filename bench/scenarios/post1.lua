-- wrk script: POST / with a 1-byte body. A request with a body takes Pingora's piped HTTP/1
-- path (two halves joined by task channels), not the direct path of vendor patch 0050; used by
-- `CG_WRK_SCRIPT=bench/scenarios/post1.lua bench/callgrind.sh` to weigh that path per build.
wrk.method = "POST"
wrk.body = "x"
wrk.headers["Content-Type"] = "text/plain"
