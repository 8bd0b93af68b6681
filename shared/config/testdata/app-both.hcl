app {
  upstream = "http://127.0.0.1:9000"
  demo     = true
}
