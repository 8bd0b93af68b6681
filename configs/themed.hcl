# lanes example: the demo site, themed. Every HTML page the demo serves is
# wrapped in a theme page that fetchd fetches and caches.
#
#   make run CONFIG=configs/themed.hcl
#   open http://127.0.0.1:8080/       the demo site, in the theme
#   open http://127.0.0.1:8081/       the dashboard
#   curl -si http://127.0.0.1:8080/ | grep -i x-theme    # fresh, stale or unthemed
#
# Where the theme comes from: the demo itself serves a 20 KB theme page at
# /demo/theme.html, so this config needs no other server. fetchd fetches it
# through lanes' own listener; the page opts out of theming (the response
# header "X-Lanes-Theme: off"), so it arrives as it is. Until lanes is up
# and the first fetch has landed (or from fetchd's cache on a later start)
# pages are served unthemed, never failed. A file:// theme URL would need
# an absolute path, which a config meant to run from any checkout cannot
# give. With your own site, point url at the theme page it serves.

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
  url = "http://127.0.0.1:8080/demo/theme.html"

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
  cache_dir     = "./data/fetchd"
  fetch_timeout = "10s"
  min_refresh   = "5s"
  stale_wait    = "100ms"
}

lane "default" {
  min_workers     = 2
  max_workers     = 2
  request_timeout = "30s"
}

# fetchd's own fetches of the theme page get a lane of their own, so they
# never wait behind the site's traffic.
lane "theme" {
  min_workers = 1
  max_workers = 1
  map         = ["GET /demo/theme.html"]
}

lane "slow" {
  min_workers     = 2
  max_workers     = 2
  request_timeout = "60s"
  map             = ["GET /demo/sleep*"]
}
