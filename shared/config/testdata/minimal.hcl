app {
  demo = true
}
