-- wrk script for scripts/bench.py: each request carries the next header line
-- of a file (one "Name: value" a line, e.g. a session's Cookie or an
-- Authorization), in turn, so that the load is spread over every session or
-- token in the file.
--
--   wrk ... -s scripts/bench.lua URL -- HEADER_FILE PATH
--
-- Statuses are not counted here (a response() callback would slow wrk down
-- for every setup): scripts/bench.py checks them in the server's own counters.
--
-- With WRK_HISTOGRAM=FILE in the environment, wrk's latency histogram is
-- written to FILE at the end: one "microseconds count" line per latency seen.

local threads = 0

function setup(thread)
   thread:set("id", threads)
   threads = threads + 1
end

function init(args)
   local file, path = args[1], args[2] or "/"
   requests = {}
   for line in io.lines(file) do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then
         requests[#requests + 1] = wrk.format("GET", path, {
            [name] = value,
            ["Accept"] = "application/json",
         })
      end
   end
   if #requests == 0 then
      error("no header line in " .. file)
   end
   -- Threads start at different places in the list.
   next_index = (id * 7919) % #requests
end

function request()
   next_index = next_index % #requests + 1
   return requests[next_index]
end

function done(summary, latency, requests)
   local path = os.getenv("WRK_HISTOGRAM")
   if not path or path == "" then
      return
   end
   local out = assert(io.open(path, "w"))
   -- latency(i): the i-th latency seen (µs) and how many requests took it.
   for i = 1, #latency do
      local value, count = latency(i)
      out:write(string.format("%d %d\n", value, count))
   end
   out:close()
end
