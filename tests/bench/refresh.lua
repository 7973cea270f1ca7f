-- wrk: refresh-token grants, each spending a token its own earlier answer returned. Every
-- thread reads its pool of live refresh tokens (one per connection, separate sign-ins) from
-- "<prefix>.<thread number>"; a request takes one, its answer gives the next back.
local threads_made = 0
function setup(thread)
  thread:set("id", threads_made)
  threads_made = threads_made + 1
end

local pool = {}
function init(args)
  for line in io.lines(args[1] .. "." .. id) do
    table.insert(pool, line)
  end
end

function request()
  local token = table.remove(pool)
  return wrk.format("POST", "/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=refresh_token&client_id=jwt-desktop&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    table.insert(pool, token)
  end
end
