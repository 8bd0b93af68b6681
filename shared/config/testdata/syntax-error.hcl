app {
  demo = true

lane "fast" {
  min_workers = 2
