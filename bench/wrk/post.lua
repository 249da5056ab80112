-- wrk script: POST one JSON body, the same on every request, and print a JSON summary.
--
--   wrk -t1 -c16 -d10s --latency -s bench/wrk/post.lua http://127.0.0.1:8000/imdb/predict -- BODY.json
--
-- BODY.json is written by bench/run.py at run time from the data folder (one raw IMDB review,
-- one Reuters newswire, one Boston row), shaped for the server under test. The done() hook
-- prints one line, "BENCH_JSON {...}", that run.py parses: requests, duration, req/s, latency
-- percentiles in microseconds, and errors (socket errors, timeouts, non-2xx/3xx responses).

local body_file = nil

function init(args)
  body_file = args[1]
  if body_file == nil then
    error("usage: wrk ... -s post.lua URL -- BODY.json")
  end
  local file = assert(io.open(body_file, "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    string.format('"requests": %d', summary.requests),
    string.format('"duration_us": %d', summary.duration),
    string.format('"bytes": %d', summary.bytes),
    string.format('"rps": %.3f', summary.requests / (summary.duration / 1e6)),
    string.format('"latency_mean_us": %.1f', latency.mean),
    string.format('"latency_max_us": %d', latency.max),
    string.format('"p50_us": %d', latency:percentile(50)),
    string.format('"p90_us": %d', latency:percentile(90)),
    string.format('"p99_us": %d', latency:percentile(99)),
    string.format('"errors_connect": %d', e.connect),
    string.format('"errors_read": %d', e.read),
    string.format('"errors_write": %d', e.write),
    string.format('"errors_status": %d', e.status),
    string.format('"errors_timeout": %d', e.timeout),
  }
  io.write("BENCH_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
