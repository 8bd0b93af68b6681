app {
  demo = true
}

lane "slow" {
}

auto_map {
  threshold = "3s"
  lane      = "slower"
  from      = ["default", "fast"]
}
