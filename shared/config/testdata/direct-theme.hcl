app {
  upstream = "http://127.0.0.1:9000"
  theme    = "main"
  direct   = true
}
theme "main" {
  url = "file:///dev/null"
  rule "title" {}
}
