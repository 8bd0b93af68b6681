# Every lane runs a program of its own: no app block is needed.
lane "default" {
  exec         = ["/bin/sh", "-c", "exec my-app"]
  health_path  = "/healthz"
  ready        = "notify"
  stop_signal  = "term"
  stop_timeout = "3s"
  exec_dir     = "."
  exec_env     = {
    PYTHONUNBUFFERED       = "1"
    DJANGO_SETTINGS_MODULE = "site.settings"
  }
}
lane "php" {
  exec        = ["/bin/sh", "-c", "exec php -S 127.0.0.1:$PORT"]
  exec_socket = "port"
  map         = ["* /legacy/*"]
}
