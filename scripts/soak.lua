-- wrk script for scripts/soak.py: authenticated requests rotating through a
-- file of session cookies (one `Cookie:` value per line).
--
--   wrk ... -s scripts/soak.lua URL -- COOKIE_FILE REQUESTS_PER_THREAD PATH
--
-- Each thread stops by itself after REQUESTS_PER_THREAD answers and writes
-- "soak-thread-finished" (wrk itself waits for its -d duration or a SIGINT,
-- which soak.py sends once every thread has finished). At the end, one line
-- per thread, "soak-thread responses=N statuses=200:N,302:M", and a summary.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   local file, limit, path = args[1], tonumber(args[2]), args[3] or "/"
   requests = {}
   for line in io.lines(file) do
      if line ~= "" then
         requests[#requests + 1] = wrk.format("GET", path, {
            ["Cookie"] = line,
            ["Accept"] = "application/json",
         })
      end
   end
   if #requests == 0 then
      error("no cookie in " .. file)
   end
   per_thread_limit = limit
   -- Threads start at different places in the list.
   next_index = (id * 7919) % #requests
   responses = 0
   statuses = {}
end

function request()
   next_index = next_index % #requests + 1
   return requests[next_index]
end

function response(status, headers, body)
   responses = responses + 1
   statuses[status] = (statuses[status] or 0) + 1
   if responses == per_thread_limit then
      io.write("soak-thread-finished\n")
      io.flush()
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   for _, thread in ipairs(threads) do
      local parts = {}
      for status, count in pairs(thread:get("statuses")) do
         parts[#parts + 1] = status .. ":" .. count
      end
      io.write(string.format("soak-thread responses=%d statuses=%s\n",
         thread:get("responses"), table.concat(parts, ",")))
   end
   local e = summary.errors
   io.write(string.format(
      "soak-summary requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d "
         .. "latency_p50_us=%d latency_p99_us=%d latency_max_us=%d\n",
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
