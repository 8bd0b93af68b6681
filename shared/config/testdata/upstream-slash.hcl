app {
  upstream = "https://app.internal:8443/"
  theme    = "main"
}

theme "site" {
  url = "file:///srv/theme.html"
}

theme "main" {
  url = "https://example.com/theme.html"
}

log {
  level  = "DEBUG"
  format = "json"
}
