app {
  upstream = "http://127.0.0.1:9000"
  theme    = "mian"
}

theme "main" {
  url = "ftp://example.com/theme.html"
  rule "replace" {
    theme = "#content"
  }
  rule "swap" {}
}

theme "main" {
}
