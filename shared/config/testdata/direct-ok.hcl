# Direct mode: the front proxies to the upstream itself for every lane
# that runs the built-in app; an exec lane keeps its workers.
app {
  upstream = "http://127.0.0.1:9000"
  direct   = true
}
lane "default" {
  max_workers = 4
  concurrency = 8
}
lane "py" {
  exec = ["/bin/sh", "-c", "exec my-app"]
  map  = ["* /py/*"]
}
