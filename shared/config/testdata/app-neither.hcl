app {
  upstream_timeout = "10s"
}
