app {
  demo = true
}

lane "custom" {
  command = ["./bin/no-such-worker"]
  map     = ["GET /custom/*"]
}
