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
lane "env" {
  exec     = ["/bin/sh"]
  exec_dir = "no-such-dir"
  exec_env = {
    LISTEN_FDS = "2"
    "A=B"      = "x"
    GOOD       = 1
  }
}
lane "envtype" {
  exec     = ["/bin/sh"]
  exec_dir = "exec-ok.hcl"
  exec_env = ["X=1"]
}
lane "stray2" {
  exec_env = { A = "b" }
}
