# lanes example: the built-in demo site behind three lanes.
#
#   make run        # bin/lanesd -config configs/example.hcl
#   open http://127.0.0.1:8080/       the demo site
#   open http://127.0.0.1:8081/       the dashboard
#
# Check a config without starting anything: bin/lanesd -config FILE -check

# Where clients connect.
listen = "127.0.0.1:8080"

# Add X-Lane and Server-Timing (queue, filter, run, total) to every response,
# so you can see which lane served a request and where its time went.
debug_headers = true

# On SIGTERM/SIGINT, wait this long for in-flight requests before stopping.
shutdown_timeout = "30s"

# The admin listener: dashboard and JSON API. It is served by the
# supervisor itself, so it answers even when every lane is saturated.
admin {
  listen = "127.0.0.1:8081"
  # token_file = "admin.token"   # require "Authorization: Bearer TOKEN"
  #                              # (path relative to this file)
}

log {
  level      = "info"   # trace, debug, info, warn, error
  format     = "text"   # or "json"
  access_log = true     # one line per request with its lane and times
}

# What the built-in worker serves: the demo site, with /demo/sleep?ms=N,
# /demo/hang, /demo/spin and /demo/crash to misbehave on purpose.
# For a real application use upstream = "http://127.0.0.1:9000" instead.
app {
  demo = true
}

# Every request no other lane maps lands here.
lane "default" {
  min_workers     = 2      # worker processes always running
  max_workers     = 6      # more start while requests wait and every worker is busy
  idle_timeout    = "60s"  # ... and leave again after this long idle
  concurrency     = 1      # requests one worker process runs at once
  max_queue       = 100    # requests allowed to wait; beyond that: 503 at once
  queue_timeout   = "5s"   # longest wait for a worker; then 503 + Retry-After
  request_timeout = "30s"  # past this: 504, and the worker is killed and replaced
  max_requests        = 10000  # replace a worker after this many requests...
  max_requests_jitter = 1000   # ... plus up to this many, so they do not all go at once
}

# Cheap static requests: they never wait behind a slow page.
lane "fast" {
  min_workers = 2
  max_workers = 2
  map         = ["GET /static/*", "GET /*.png"]   # "METHOD PATH", * matches anything
}

# Known slow requests get their own workers and a longer timeout, so they
# queue among themselves and cannot starve the default lane.
# Try: curl 'http://127.0.0.1:8080/demo/sleep?ms=5000' while loading /.
lane "slow" {
  min_workers     = 2
  max_workers     = 2
  max_queue       = 50
  request_timeout = "60s"
  map             = ["GET /demo/sleep", "GET /report/*"]
}

# Requests that turn out slow move themselves: after a request from the
# default lane whose filter + run time (never its queue time) passed the
# threshold, or that hit request_timeout, its exact "METHOD /path" is mapped
# to the slow lane. See them with `bin/lanectl mapped`. A learned mapping
# that runs fast again (or is not used) for forget_after is forgotten.
# Try: curl 'http://127.0.0.1:8080/demo/sleep/report?ms=4000' twice: the
# second one runs in lane "slow" (see its X-Lane header).
auto_map {
  threshold    = "3s"
  lane         = "slow"
  from         = ["default"]
  forget_after = "10m"
  max_entries  = 10000
}
