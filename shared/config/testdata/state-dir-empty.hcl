state_dir = ""

app {
  demo = true
}
