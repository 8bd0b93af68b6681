package lane

import "testing"

const dump = `SIGQUIT: quit
PC=0x46e8e1 m=0 sigcode=0

goroutine 0 gp=0x8f0e80 m=0 mp=0x8f19a0 [idle]:
runtime.futex(0x8f1ae0, 0x80, 0x0, 0x0, 0x0, 0x0)
	/usr/local/go/src/runtime/sys_linux_amd64.s:557 +0x21 fp=0x7ffd sp=0x7ffd pc=0x46e8e1

goroutine 21 gp=0xc000103c00 m=nil [IO wait]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
	/usr/local/go/src/runtime/proc.go:435 +0xce fp=0xc00019f6f8 sp=0xc00019f6d8 pc=0x46860e
internal/poll.(*FD).Read(0xc000136080, {0xc00021e000, 0x1000, 0x1000})
	/usr/local/go/src/internal/poll/fd_unix.go:165 +0x27a fp=0xc00019f7e0 sp=0xc00019f778 pc=0x4d8bda
bufio.(*Reader).Peek(0xc0001a2060, 0x1)
	/usr/local/go/src/bufio/bufio.go:152 +0x5d fp=0xc00019f8c0 sp=0xc00019f898 pc=0x5a03fd
github.com/valyala/fasthttp.(*Server).serveConn(0xc000194008, {0x9b6e60, 0xc000120060})
	/root/go/pkg/mod/github.com/valyala/fasthttp@v1.77.0/server.go:2309 +0x1a5 fp=0xc00019fe70 sp=0xc00019f9d0 pc=0x6f2c45

goroutine 23 gp=0xc000103dc1 m=nil [IO wait]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
	/usr/local/go/src/runtime/proc.go:435 +0xce fp=0xc00019f6f8 sp=0xc00019f6d8 pc=0x46860e
github.com/lanes-dev/lanes/shared/heldconn.(*Conn).Read(0xc000136080, {0xc00021e000, 0x1000, 0x1000})
	/src/lanes/shared/heldconn/heldconn.go:137 +0x27a fp=0xc00019f7e0 sp=0xc00019f778 pc=0x4d8bda
github.com/lanes-dev/lanes/worker/internal/dataplane.(*dataConn).Read(0xc000136080, {0xc00021e000, 0x1000, 0x1000})
	/src/lanes/worker/internal/dataplane/conn.go:59 +0x27a fp=0xc00019f7e0 sp=0xc00019f778 pc=0x4d8bda
bufio.(*Reader).Peek(0xc0001a2060, 0x1)
	/usr/local/go/src/bufio/bufio.go:152 +0x5d fp=0xc00019f8c0 sp=0xc00019f898 pc=0x5a03fd
github.com/valyala/fasthttp.(*Server).serveConn(0xc000194008, {0x9b6e60, 0xc000120060})
	/root/go/pkg/mod/github.com/valyala/fasthttp@v1.77.0/server.go:2309 +0x1a5 fp=0xc00019fe70 sp=0xc00019f9d0 pc=0x6f2c45

goroutine 22 gp=0xc000103dc0 m=nil [select (no cases), 1 minutes]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
	/usr/local/go/src/runtime/proc.go:435 +0xce fp=0xc0001a3e10 sp=0xc0001a3df0 pc=0x46860e
runtime.block()
	/usr/local/go/src/runtime/select.go:104 +0x26 fp=0xc0001a3e40 sp=0xc0001a3e10 pc=0x4460e6
github.com/lanes-dev/lanes/worker/app.hang(...)
	/src/lanes/worker/app/demo.go:120
github.com/lanes-dev/lanes/worker/app.(*demo).serve(0xc00011c000, 0xc000254000)
	/src/lanes/worker/app/demo.go:88 +0x45 fp=0xc0001a3e60 sp=0xc0001a3e40 pc=0x7a1b05
github.com/lanes-dev/lanes/worker.(*server).handle(0xc0001a2000, 0xc000254000)
	/src/lanes/worker/serve.go:160 +0x85 fp=0xc0001a3eb0 sp=0xc0001a3e60 pc=0x7a2345
github.com/valyala/fasthttp.(*Server).serveConn(0xc000194008, {0x9b6e60, 0xc000120068})
	/root/go/pkg/mod/github.com/valyala/fasthttp@v1.77.0/server.go:2480 +0x1a5 fp=0xc00019fe70 sp=0xc00019f9d0 pc=0x6f2c45
`

func TestWhereHungHandler(t *testing.T) {
	want := "github.com/lanes-dev/lanes/worker/app.hang (/src/lanes/worker/app/demo.go:120) < " +
		"github.com/lanes-dev/lanes/worker/app.(*demo).serve (/src/lanes/worker/app/demo.go:88)"
	if got := where(dump); got != want {
		t.Errorf("where:\n got %q\nwant %q", got, want)
	}
	if got := where("not a dump"); got != "" {
		t.Errorf("where(not a dump) = %q", got)
	}
}
