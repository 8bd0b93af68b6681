# A Rack app for the exec lanes' tests under puma: /pid answers at once,
# /hang never returns.
run lambda { |env|
  path = env["PATH_INFO"]
  loop { sleep 1 } if path == "/hang"
  body = path == "/pid" ? Process.pid.to_s : "ok"
  [200, { "content-type" => "text/plain", "content-length" => body.bytesize.to_s }, [body]]
}
