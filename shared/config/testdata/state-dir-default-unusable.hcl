# The default state_dir, beside cache_dir, cannot be created: a warning,
# and lanesd starts, keeping mappings in memory only.
app {
  demo  = true
  theme = "main"
}

theme "main" {
  url = "http://127.0.0.1:9001/theme.html"
}

fetchd {
  cache_dir = "token.txt/fetchd"
}
