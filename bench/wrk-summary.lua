-- wrk script: writes wrk's exact totals, as shell-readable key=value lines, to $WRK_SUMMARY.
-- wrk's own report rounds bytes ("1.02GB read"); the recording check needs them to the byte.
-- request_bytes is the size of the one request wrk sends over and over, so requests *
-- request_bytes is what the client wrote for the completed requests.
local threads = {}

-- Runs in the main state, once per thread: keep the thread to read its values in done().
setup = function(thread)
  table.insert(threads, thread)
end

-- Runs in each thread's state, after wrk.init() has added the Host header: the request is
-- built exactly as the thread will send it.
init = function(args)
  request_bytes = string.len(wrk.format())
end

done = function(summary, latency, requests)
  local out = assert(io.open(assert(os.getenv("WRK_SUMMARY"), "WRK_SUMMARY not set"), "w"))
  local errors = summary.errors
  local lines = {
    { "requests", summary.requests },
    { "bytes", summary.bytes },
    { "duration_us", summary.duration },
    { "request_bytes", threads[1]:get("request_bytes") },
    { "errors_connect", errors.connect },
    { "errors_read", errors.read },
    { "errors_write", errors.write },
    { "errors_status", errors.status },
    { "errors_timeout", errors.timeout },
  }
  for _, line in ipairs(lines) do
    -- %.0f, not %d: Lua numbers are doubles and byte counts pass 2^31.
    out:write(string.format("%s=%.0f\n", line[1], line[2]))
  end
  out:close()
end
