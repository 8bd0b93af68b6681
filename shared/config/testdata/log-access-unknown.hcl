app { demo = true }

log {
  access_format = "common"
}
