listen           = "8080"
shutdown_timeout = "forever"
debug_headers    = "maybe"

admin {
  listen = "127.0.0.1:8080"
}

admin {
}

log {
  level  = "verbose"
  format = "xml"
}

app {
  upstream = "ftp://127.0.0.1:9000"
}

fetchd {
  workers    = 0
  stale_wait = "0s"
  max_stale  = "1d"
}

lane "default" {
  min_workers = 0
  concurrency = 0
  max_queue   = -1
  map         = ["get /"]
}

lane "slow" {
  min_workers  = 1.5
  max_requests = "many"
  map          = "GET /report/*"
  command      = ["", "-v"]
}

auto_map {
  lane = "nowhere"
}
