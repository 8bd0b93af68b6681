app {
  demo = true
}

lane "default" {
  min_workers = 5
  max_workers = 3
}

lane "fixed" {
  min_workers = 0
}
