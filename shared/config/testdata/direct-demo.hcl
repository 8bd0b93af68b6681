app {
  demo   = true
  direct = true
}
