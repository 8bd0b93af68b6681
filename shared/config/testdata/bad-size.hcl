app {
  demo = true
}

front {
  max_header_size = "8 XB"
  max_body_size   = "0"
}

lane "default" {
  max_rss = "-1MB"
}

lane "big" {
  max_rss = "99999999999999GB"
}
