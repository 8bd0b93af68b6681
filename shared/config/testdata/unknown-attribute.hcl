listn = "127.0.0.1:8080"

app {
  demo = true
}

lane "fast" {
  min_worker = 2
  colour     = "blue"
}

lanes "slow" {
}
