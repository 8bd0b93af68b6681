admin {
  listen     = "127.0.0.1:9091"
  token_file = "token.txt"
}

app {
  demo = true
}
