app {
  upstream = "http://127.0.0.1:9000/api?x=1"
}
