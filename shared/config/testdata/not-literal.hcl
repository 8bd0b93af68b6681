# The config is literal values: no variables, no functions. null means unset.
listen           = listen_addr
shutdown_timeout = upper("1s")
debug_headers    = null

app {
  demo = true
}

lane "fast" {
  map = ["GET /a", null, 42]
}
