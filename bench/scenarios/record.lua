-- wrk script for bench/scenarios/run.sh: records what plain wrk only sums up.
--
-- Writes to the file named by $SCEN_EVENTS (use one wrk thread, `-t1`), times in wall-clock
-- milliseconds (CLOCK_REALTIME, the same clock as `date +%s%3N` in the shell):
--   bad <ms> <status>                 every response that is not 2xx
--   run <origin> <first_ms> <last_ms> a run of responses from one origin (its `x-origin` header)
--                                     with no gap over 300 ms; written when the run ends and, while
--                                     it is open, once a second (the reader keeps the largest
--                                     last_ms per origin and first_ms)
--   count <responses> <non2xx> <ms>   running totals, once a second
-- Connect/read/write/timeout errors never reach response(): they come from wrk's own summary.
-- The file is flushed once a second, so up to the last second of a run may be missing.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } sy_timespec;
int clock_gettime(int clk, sy_timespec *tp);
]]
local ts = ffi.new("sy_timespec")
local function now_ms()
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) * 1000 + math.floor(tonumber(ts.tv_nsec) / 1000000)
end

local out
local runs = {} -- origin -> { first_ms, last_ms }
local n, bad, last_flush = 0, 0, 0

function init(args)
  local path = os.getenv("SCEN_EVENTS")
  if path then out = io.open(path, "w") end
end

function response(status, headers, body)
  local t = now_ms()
  n = n + 1
  if status < 200 or status > 299 then
    bad = bad + 1
    if out then out:write("bad ", t, " ", status, "\n") end
  end
  local o = headers["x-origin"] or headers["X-Origin"]
  if o then
    local r = runs[o]
    if r and t - r[2] <= 300 then
      r[2] = t
    else
      if r and out then out:write("run ", o, " ", r[1], " ", r[2], "\n") end
      runs[o] = { t, t }
    end
  end
  if out and t - last_flush >= 1000 then
    last_flush = t
    for k, r in pairs(runs) do out:write("run ", k, " ", r[1], " ", r[2], "\n") end
    out:write("count ", n, " ", bad, " ", t, "\n")
    out:flush()
  end
end
