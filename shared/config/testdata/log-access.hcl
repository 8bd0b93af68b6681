app { demo = true }

log {
  access_format    = "combined"
  access_log_query = true
}
