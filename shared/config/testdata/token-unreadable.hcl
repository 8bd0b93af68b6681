admin {
  token_file = "no-such-token"
}

app {
  demo = true
}
