-- wrk script for the taskruns benchmark. Environment:
--   BENCH_METHOD  GET, PATCH, or POST (without a body: the heartbeat action)
--   BENCH_PATHS   file with one request path per line; each request picks one at random
--   BENCH_KEY     API key (Bearer)
--   BENCH_UNIQUE  "1": each PATCH adds a state key unique to its thread and sequence number
--   BENCH_ROUND   with BENCH_UNIQUE, a round number that keeps keys unique across wrk runs
--   BENCH_ACKED   with BENCH_UNIQUE, a file to which the keys of all 2xx-acknowledged PATCHes
--                 are written (one connection per thread, so responses come in request order)
--   BENCH_WRITES  if not "0": each thread, on its answer number BENCH_WRITES, writes a line to
--   BENCH_DONE    this file (bench/run.py interrupts wrk once every thread has, and wrk then
--                 reports as at the end of its duration). A thread that is done goes on sending
--                 until then: stopped, its reconnected idle socket would hold a sync worker.
-- Prints one line "RESULT {json}" with counts and latency percentiles (microseconds).
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    table.insert(paths, line)
  end
  method = os.getenv("BENCH_METHOD")
  unique = os.getenv("BENCH_UNIQUE") == "1"
  round = os.getenv("BENCH_ROUND") or "0"
  writes = tonumber(os.getenv("BENCH_WRITES") or "0")
  headers = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"), ["Content-Type"] = "application/json" }
  sent, answered, ok, bad = 0, 0, 0, 0
  -- wrk calls request() once on its first thread to check the script before sending
  -- anything; that request is never sent, so it must not take a sequence number.
  verifying = id == 1
  acked = {}
  math.randomseed(id * 7919 + os.time())
end

function request()
  if verifying then
    verifying = false
    return wrk.format(method, paths[1], headers, method == "GET" and nil or "{}")
  end
  sent = sent + 1
  local path = paths[math.random(#paths)]
  if method == "GET" then
    return wrk.format("GET", path, headers)
  end
  if method == "POST" then  -- a bodiless action (heartbeat)
    return wrk.format("POST", path, headers, "")
  end
  local key = unique and string.format("r%sw%d_%d", round, id, sent) or string.format("k%d", math.random(50))
  return wrk.format("PATCH", path, headers, string.format('{"state": {"%s": %d}}', key, sent))
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
    if unique then table.insert(acked, string.format("r%sw%d_%d", round, id, answered)) end
  else
    bad = bad + 1
  end
  if writes > 0 and answered == writes then
    local done = io.open(os.getenv("BENCH_DONE"), "a")
    done:write(id, "\n")
    done:close()
  end
end



function done(summary, latency, requests)
  local total_ok, total_bad = 0, 0
  local out = os.getenv("BENCH_ACKED") and io.open(os.getenv("BENCH_ACKED"), "w")
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_bad = total_bad + thread:get("bad")
    if out then
      for _, key in ipairs(thread:get("acked")) do out:write(key, "\n") end
    end
  end
  if out then out:close() end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "ok": %d, "bad_status": %d, ' ..
    '"socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), total_ok, total_bad,
    e.connect + e.read + e.write + e.timeout))
end
