app {
  demo = true
}

lane "slow" {
  min_workers = 2
}

lane "slow" {
  min_workers = 3
}

lane "Bad Name" {
}
