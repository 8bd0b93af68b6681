// A node app for the exec lanes' tests: it serves on the socket lanes hands
// it (fd 3) or, with exec_socket = "port", on $PORT. /pid answers at once;
// /hang spins its one event loop for good (only a kill ends it).
const http = require("http");
const server = http.createServer((req, res) => {
  if (req.url === "/hang") {
    for (;;) {}
  }
  const body = req.url === "/pid" ? String(process.pid) : "ok";
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
});
server.listen(process.env.LISTEN_FDS ? { fd: 3 } : { host: "127.0.0.1", port: Number(process.env.PORT) });
