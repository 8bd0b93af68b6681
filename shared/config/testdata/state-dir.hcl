# state_dir is taken from the config file's directory.
state_dir = "state"

app {
  demo = true
}
