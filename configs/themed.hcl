# lanes example: the demo site, themed. Every HTML page the demo serves is
# wrapped in a theme page that fetchd fetches and caches.
#
#   make run CONFIG=configs/themed.hcl
#   open http://127.0.0.1:8080/       the demo site, in the theme
#   open http://127.0.0.1:8081/       the dashboard
#   curl -si http://127.0.0.1:8080/ | grep -i x-theme    # fresh, stale or unthemed
#
# Where the theme comes from: a 20 KB theme page in this checkout (the one
# the demo also serves at /demo/theme.html), named with a file: URL
# relative to this config file, so this config needs no other server and
# `lanesd -check` can read it. fetchd caches it in ./data/fetchd; edit the
# file and the site picks the new version up within min_refresh. With your
# own site, point url at the theme page it serves (http:// or https://).

listen        = "127.0.0.1:8080"
debug_headers = true   # X-Lane, Server-Timing (with the filter time) and X-Theme

admin {
  listen = "127.0.0.1:8081"
}

log {
  level      = "info"
  access_log = true
}

app {
  demo  = true
  theme = "demo"
}

theme "demo" {
  url = "file:../worker/app/demo_theme.html"

  # The page's #content becomes the theme's #content.
  rule "replace" {
    theme   = "#content"
    content = "#content"
  }
  # The page's <title> becomes the theme's.
  rule "title" {}
  # The page's stylesheets and styles join the theme's head.
  rule "append" {
    theme   = "head"
    content = "head link, head style"
  }
  # The theme's own placeholder never shows. Theme drops happen once per
  # theme version, before any page goes in; content drops (content = "...")
  # happen before the other rules.
  rule "drop" {
    theme = ".placeholder"
  }
}

fetchd {
  cache_dir     = "../data/fetchd"   # relative to this file: the repository's data/fetchd
  fetch_timeout = "10s"
  min_refresh   = "5s"
  stale_wait    = "100ms"
}

lane "default" {
  min_workers     = 2
  max_workers     = 2
  request_timeout = "30s"
}

lane "slow" {
  min_workers     = 2
  max_workers     = 2
  request_timeout = "60s"
  map             = ["GET /demo/sleep*"]
}
