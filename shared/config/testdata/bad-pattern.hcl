app {
  demo = true
}

lane "fast" {
  map = [
    "GET",
    "get /static/*",
    "GET static/*",
    "G3T /x",
    "GET /x?y=1",
    "GET /ok/*",
  ]
}
