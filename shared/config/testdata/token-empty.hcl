admin {
  token_file = "token-empty.txt"
}

app {
  demo = true
}
