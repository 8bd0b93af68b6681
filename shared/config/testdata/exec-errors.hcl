lane "default" {
  exec         = ["./no-such-program", "app:app"]
  exec_socket  = "tcp"
  health_path  = "healthz"
  ready        = "yes"
  stop_signal  = "SIGFOO"
  stop_timeout = "soon"
}
lane "both" {
  command = ["/bin/sh"]
  exec    = ["/bin/sh"]
}
lane "stray" {
  health_path = "/healthz"
}
