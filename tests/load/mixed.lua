-- wrk script for tests/test_load.py: cycles through prepared requests (one file each,
-- first line the path, the rest the JSON body), stops each thread after its share of
-- WRK_REQUESTS answers, and prints one JSON line of totals.
local threads = {}
local limit = tonumber(os.getenv("WRK_REQUESTS") or "20000")
local thread_count = tonumber(os.getenv("WRK_THREADS") or "2")

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  prepared = {}
  for _, file in ipairs(args) do
    local f = assert(io.open(file, "r"))
    local path = f:read("*l")
    local body = f:read("*a")
    f:close()
    table.insert(prepared, wrk.format("POST", path, {["Content-Type"] = "application/json"}, body))
  end
  sent, answered, failed = 0, 0, 0
  share = math.floor(limit / thread_count)
end

function request()
  sent = sent + 1
  return prepared[(sent % #prepared) + 1]
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then failed = failed + 1 end
  if answered >= share then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local answered_total, failed_total = 0, 0
  for _, thread in ipairs(threads) do
    answered_total = answered_total + thread:get("answered")
    failed_total = failed_total + thread:get("failed")
  end
  local e = summary.errors
  io.write(string.format(
    '{"answered": %d, "non_200": %d, "socket_errors": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f}\n',
    answered_total, failed_total, e.connect + e.read + e.write + e.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
