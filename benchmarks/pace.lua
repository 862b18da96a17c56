-- Paced load for wrk: each connection pauses a random 0 to 2 * THINK ms
-- before each request, so the offered load stays below what the server can
-- carry and latency is not the queue of a saturated core:
--   wrk -t1 -c100 -d10s -s benchmarks/pace.lua URL -- THINK
-- Prints one line of latency percentiles in ms at the end ("percentiles ...").

local think = 100

function init(args)
   think = tonumber(args[1] or "100")
end

function delay()
   return math.random(0, 2 * think)
end

function done(summary, latency, requests)
   local out = {}
   for _, p in ipairs({50, 90, 95, 98, 99, 99.9}) do
      out[#out + 1] = string.format("p%s=%.2f", p, latency:percentile(p) / 1000)
   end
   io.write("percentiles " .. table.concat(out, " ") .. "\n")
end
