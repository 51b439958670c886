-- wrk script for bench/ingress.py: cycle through pre-signed Leezy webhook deliveries.
--
-- WRK_REQUESTS names a file of lines "delivery_id<TAB>timestamp<TAB>signature<TAB>body"; wrk thread t
-- of T sends lines t, t+T, t+2T, ... (so no two threads send the same delivery) and wraps around only
-- when its share runs out. WRK_PATH is the URL path. Each thread counts answers by status and keeps
-- the delivery id of every 2xx answer (the server echoes it as "delivery_id" in its JSON); done()
-- writes "status<TAB>count" lines, "ok<TAB>delivery_id" lines, then the totals and the latency
-- percentiles (µs) to WRK_OUT.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("WRK_THREADS"))
  local path = os.getenv("WRK_PATH")
  reqs = {}
  local i = 0
  for line in io.lines(os.getenv("WRK_REQUESTS")) do
    if i % nthreads == tid then
      local id, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", path, {
        ["Content-Type"] = "application/json",
        ["X-Leezy-Delivery"] = id,
        ["X-Leezy-Event"] = "meeting.scheduled",
        ["X-Leezy-Timestamp"] = ts,
        ["X-Leezy-Signature"] = sig,
      }, body)
    end
    i = i + 1
  end
  nxt = 0
  counts = {}
  ok = {}
end

function request()
  nxt = nxt + 1
  return reqs[((nxt - 1) % #reqs) + 1]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status >= 200 and status < 300 then
    local id = body:match('"delivery_id":"([^"]+)"')
    if id then ok[#ok + 1] = id end
  end
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("WRK_OUT"), "w")
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  for status, n in pairs(totals) do
    out:write(string.format("%d\t%d\n", status, n))
  end
  for _, thread in ipairs(threads) do
    for _, id in ipairs(thread:get("ok")) do
      out:write("ok\t" .. id .. "\n")
    end
  end
  out:write(string.format("errors\t%d\n", summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
  out:write(string.format("requests\t%d\n", summary.requests))
  out:write(string.format("duration_us\t%d\n", summary.duration))
  out:write(string.format("p50_us\t%d\n", latency:percentile(50)))
  out:write(string.format("p99_us\t%d\n", latency:percentile(99)))
  out:write(string.format("max_us\t%d\n", latency.max))
  out:close()
end
