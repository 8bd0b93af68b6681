# lanes running a Python app: examples/wsgi/app.py (standard library only)
# as the workers of two lanes. No app block: every lane runs its own program.
#
#   make run CONFIG=configs/python.hcl
#   curl http://127.0.0.1:8080/             a page from a Python worker
#   curl http://127.0.0.1:8080/env          the socket activation it got
#   curl http://127.0.0.1:8080/hang         504 after 60 s, and a new worker
#   open http://127.0.0.1:8081/             the dashboard
#
# With gunicorn instead (Debian: apt-get install python3-gunicorn):
#   exec  = ["/usr/bin/python3", "-m", "gunicorn", "--workers", "1", "--chdir", "../examples/wsgi", "app:app"]
#   ready = "notify"

listen        = "127.0.0.1:8080"
debug_headers = true

admin {
  listen = "127.0.0.1:8081"
}

# Every request no other lane maps. Each worker is one Python process,
# handed a listening unix socket as fd 3 (systemd socket activation).
lane "default" {
  min_workers     = 2
  max_workers     = 4
  exec            = ["python3", "../examples/wsgi/app.py"]  # run in this file's directory
  health_path     = "/healthz"  # takes requests once this answers, checked every 5 s
  request_timeout = "10s"       # past this: 504, and the process group is killed
  max_rss         = "200MB"     # try /leak?mb=50 a few times
}

# Slow and hanging requests wait among themselves, never in front of the
# default lane's.
lane "slow" {
  min_workers     = 2
  max_workers     = 4
  exec            = ["python3", "../examples/wsgi/app.py"]
  health_path     = "/healthz"
  request_timeout = "60s"
  map             = ["GET /sleep*", "GET /hang"]
}
