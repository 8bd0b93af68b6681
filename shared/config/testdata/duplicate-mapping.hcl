app {
  demo = true
}

lane "fast" {
  map = ["GET /static/*"]
}

lane "slow" {
  map = ["GET  /static/*", "* /report/*", "* /report/*"]
}
