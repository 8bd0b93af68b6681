shutdown_timeout = "abc"

app {
  demo             = true
  upstream_timeout = "-5s"
}

lane "slow" {
  queue_timeout   = "0"
  request_timeout = 60
}
