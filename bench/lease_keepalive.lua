-- wrk script: keep-alives for a file of lease ids at a fixed aggregate rate.
--   LEASE_IDS=FILE LEASE_API=pyxis|etcd LEASE_RATE=3000 wrk -t T -c C -d 30s -s lease_keepalive.lua URL
-- Thread k takes ids k, k+T, ... from FILE and cycles over them; each thread
-- hands out send slots at LEASE_RATE/T per second (LuaJIT ffi clock_gettime),
-- delay() waits until the next slot, so every lease is renewed every
-- (ids / LEASE_RATE) seconds. pyxis: POST /v1/lease/ID/keepalive;
-- etcd: POST /v3/lease/keepalive {"ID":"ID"} (JSON gateway).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
int clock_gettime(int clk, wrk_timespec *ts);
]]
local ts = ffi.new("wrk_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local api = os.getenv("LEASE_API") or "pyxis"
local ids, n, i, slot, period = {}, 0, 0, nil, nil
non2xx = 0
local sent_ = 0

function init(args)
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  local rate = tonumber(os.getenv("LEASE_RATE") or "3000")
  period = 1000.0 * nthreads / rate
  local k = 0
  for line in io.lines(os.getenv("LEASE_IDS")) do
    if k % nthreads == tid then
      n = n + 1
      ids[n] = line
    end
    k = k + 1
  end
  if n == 0 then error("no lease ids for thread " .. tid) end
  wrk.headers["Content-Type"] = "application/json"
end

function delay()
  local t = now_ms()
  if slot == nil or slot < t - 1000 then slot = t end -- start, or fell >1 s behind
  slot = slot + period
  local d = slot - period - t
  if d < 0 then return 0 end
  return math.floor(d)
end

function request()
  i = i % n + 1
  sent_ = sent_ + 1
  local id = ids[i]
  if api == "pyxis" then
    return wrk.format("POST", "/v1/lease/" .. id .. "/keepalive", nil, "")
  end
  return wrk.format("POST", "/v3/lease/keepalive", nil, '{"ID":"' .. id .. '"}')
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non2xx") or 0) end
  io.write(string.format("keepalive requests=%d duration_s=%.2f rate=%.1f non2xx=%d sock_err=%d p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6), bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
