# The README's config example, every block included.
listen           = "127.0.0.1:8080"
debug_headers    = false      # X-Lane and Server-Timing on responses
shutdown_timeout = "30s"

front {
  read_timeout    = "15s"
  write_timeout   = "2m"
  idle_timeout    = "90s"
  max_header_size = "16KB"
  max_body_size   = "32 MiB"
  max_conns       = 1000
  client_body_buffer = "128KB"
  response_buffer    = "512KB"
  max_temp_file      = "2GB"
  retry_methods      = ["GET", "HEAD", "PUT"]
}

admin {
  listen     = "127.0.0.1:8081"
  token_file = ""             # optional
}

log {
  level      = "info"         # trace, debug, info, warn, error
  format     = "text"         # or "json"
  access_log = true
}

app {                         # what the built-in worker serves
  upstream         = "http://127.0.0.1:9000"   # reverse-proxy every request here
  upstream_timeout = "60s"
  theme            = "main"                    # optional: theme text/html 200 responses
  # demo = true               # instead of upstream: the built-in demo site
}

theme "main" {
  url = "http://127.0.0.1:9001/theme.html"     # http(s):// or file://
  rule "replace" {
    theme   = "#content"
    content = "#content"
  }
  rule "title" {}
  rule "append" {
    theme   = "head"
    content = "head link, head style"
  }
  rule "drop" {
    theme = ".placeholder"
  }
}

fetchd {
  cache_dir     = "./data/fetchd"
  workers       = 2
  fetch_timeout = "10s"
  min_refresh   = "5s"
  stale_wait    = "100ms"
  max_stale     = "720h"
}

lane "default" {
  min_workers     = 2
  max_workers     = 8
  concurrency     = 1          # requests one worker process runs at once
  max_queue       = 100
  queue_timeout   = "5s"
  request_timeout = "30s"
  idle_timeout    = "60s"      # workers above min_workers leave after this idle
  max_requests    = 0          # recycle a worker after N requests (0: never)
  max_rss         = ""         # recycle a worker above this resident size, e.g. "256MB"
  map             = ["* /*"]
  # command       = ["./bin/my-worker"]   # a custom worker built on worker.Serve
}

lane "fast" {
  min_workers = 4
  max_workers = 4
  map         = ["GET /*.png", "GET /*.jpg", "GET /static/*"]
}

lane "slow" {
  min_workers     = 5
  max_workers     = 15
  max_queue       = 200
  request_timeout = "300s"
  max_rss         = "256MB"
  command         = ["/bin/sh", "-c", "exec ./bin/my-worker -v"]
}

auto_map {
  threshold    = "3s"          # filter + run time, never queue time
  lane         = "slow"
  from         = ["default"]
  forget_after = "10m"
  max_entries  = 10000
}
