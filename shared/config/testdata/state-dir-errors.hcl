# Each a file:line diagnostic of -check; lanesd does not start.
state_dir = "token.txt/state"

app {
  demo = true
}
