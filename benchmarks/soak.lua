-- The soak benchmark's valid request mix, for wrk:
--   wrk -t1 -c64 -d60s -s benchmarks/soak.lua http://127.0.0.1:PORT -- HELLO ECHO FANOUT SEED
-- HELLO, ECHO and FANOUT are percentages (default 60 30 10) of GET /,
-- POST /echo with a random body of 0..16 KiB, and GET /fanout?delay=0.01.
-- The requests are built once in init() (a seeded shuffle of 1,000) and
-- sent in a cycle, so generating them costs wrk nothing during the run.

local requests = {}
local count = 0
local index = 0

local function random_body(size)
   local bytes = {}
   for i = 1, size do
      bytes[i] = string.char(math.random(32, 126))
   end
   return table.concat(bytes)
end

function init(args)
   local hello = tonumber(args[1]) or 60
   local echo = tonumber(args[2]) or 30
   local fanout = tonumber(args[3]) or 10
   math.randomseed(tonumber(args[4]) or 1)
   local total = hello + echo + fanout
   for i = 1, 1000 do
      local pick = math.random() * total
      if pick < hello then
         requests[i] = wrk.format("GET", "/", {})
      elseif pick < hello + echo then
         local body = random_body(math.random(0, 16384))
         requests[i] = wrk.format("POST", "/echo",
                                  {["Content-Type"] = "application/octet-stream"}, body)
      else
         requests[i] = wrk.format("GET", "/fanout?delay=0.01", {})
      end
   end
   count = #requests
end

function request()
   index = index % count + 1
   return requests[index]
end
