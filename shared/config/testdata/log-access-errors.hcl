app { demo = true }

log {
  format           = "json"
  access_format    = "combined"
  access_log_query = "yes please"
}
