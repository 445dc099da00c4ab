package gloam_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// engine is a real `gloam up` with the Go example functions, shared by the tests.
type engine struct {
	cmd  *exec.Cmd
	base string
	ipc  string
	tmp  string
}

var eng *engine

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func TestMain(m *testing.M) {
	code := func() int {
		e, err := startEngine()
		if err != nil {
			fmt.Fprintln(os.Stderr, "cannot start the engine:", err)
			return 1
		}
		eng = e
		code := m.Run()
		if err := e.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "engine stop:", err)
			code = 1
		}
		return code
	}()
	os.Exit(code)
}

func startEngine() (*engine, error) {
	root := repoRoot()
	gloamBin := filepath.Join(root, "target", "debug", "gloam")
	hello := filepath.Join(root, "target", "debug", "hello-go")
	if _, err := os.Stat(hello); err != nil {
		build := exec.Command("go", "build", "-o", hello, ".")
		build.Dir = filepath.Join(root, "examples", "hello-go")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("building examples/hello-go: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "gloam-go-test-")
	if err != nil {
		return nil, err
	}
	e := &engine{tmp: tmp, ipc: filepath.Join(tmp, "ipc")}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "[engine]\nipc_root = %q\nlisten = \"127.0.0.1:0\"\nlog_dir = %q\n\n", e.ipc, filepath.Join(tmp, "logs"))
	fn := func(name, command, handler string, workers int, extra ...string) {
		fmt.Fprintf(&cfg, "[functions.%s]\ncommand = %q\nenv = { GLOAM_HANDLER = %q }\nmin_workers = 1\n", name, command, handler)
		if workers > 1 {
			fmt.Fprintf(&cfg, "workers_per_process = %d\n", workers)
		}
		for _, line := range extra {
			cfg.WriteString(line + "\n")
		}
		cfg.WriteString("\n")
	}
	for _, h := range []string{"Foo", "Bar", "Nop", "Echo", "Fail", "Crash", "Panic", "Sleep", "InvokeOther", "InvokeSize", "InvokeAbandon", "PassOn", "Method"} {
		fn(h, hello, h, 1)
	}
	fn("Fanout", hello, "Fanout", 2)
	fn(`"grpc:conformance.Methods"`, hello, "Method", 1, `grpc_methods = ["First", "Second"]`)
	// Its own timeout caps an internal call's deadline far below the caller's (30 s).
	fn("SleepShort", hello, "Sleep", 1, "timeout_ms = 200")
	if _, err := os.Stat(filepath.Join(root, "target", "debug", "hello-rust")); err == nil {
		fn("RustEcho", filepath.Join(root, "target", "debug", "hello-rust"), "Echo", 1)
	}
	config := filepath.Join(tmp, "gloam.toml")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(tmp, "engine.stderr"))
	if err != nil {
		return nil, err
	}
	e.cmd = exec.Command(gloamBin, "up", config)
	e.cmd.Stderr = stderr
	out, err := e.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := e.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "gloam: ready ") {
				ready <- strings.TrimPrefix(line, "gloam: ready ")
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case e.base = <-ready:
		return e, nil
	case <-time.After(60 * time.Second):
		e.cmd.Process.Kill()
		return nil, fmt.Errorf("no ready line within 60 s; see %s", stderr.Name())
	}
}

func (e *engine) stop() error {
	e.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- e.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("engine exit: %w (logs in %s)", err, e.tmp)
		}
	case <-time.After(60 * time.Second):
		e.cmd.Process.Kill()
		return fmt.Errorf("engine did not stop within 60 s of SIGTERM")
	}
	if entries, _ := os.ReadDir(e.ipc); len(entries) > 0 {
		return fmt.Errorf("IPC root not empty after stop: %d entries", len(entries))
	}
	os.RemoveAll(e.tmp)
	return nil
}

type reply struct {
	status int
	body   []byte
	kind   string
	msg    string
}

func call(t *testing.T, name string, body []byte, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest("POST", eng.base+"/function/"+name, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", name, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, body: data}
	if resp.StatusCode != 200 {
		var e struct{ Error, Message string }
		if json.Unmarshal(data, &e) == nil {
			r.kind, r.msg = e.Error, e.Message
		}
	}
	return r
}

// callRaw posts body over a plain TCP connection, reading the reply while the body is still
// being written: the gateway may refuse a large body (413) and close before reading it all, and
// a client that writes everything first can lose that reply to the connection reset.
func callRaw(t *testing.T, name string, body []byte) reply {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(eng.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		fmt.Fprintf(conn, "POST /function/%s HTTP/1.1\r\nHost: gloam\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", name, len(body))
		conn.Write(body) // may fail once the gateway has answered: expected
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("POST %s: %v", name, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, body: data}
	var e struct{ Error, Message string }
	if resp.StatusCode != 200 && json.Unmarshal(data, &e) == nil {
		r.kind, r.msg = e.Error, e.Message
	}
	return r
}

func expectOK(t *testing.T, name string, body []byte, want string) {
	t.Helper()
	r := call(t, name, body)
	if r.status != 200 || string(r.body) != want {
		t.Fatalf("%s(%.40q): %d %.200q, want 200 %.200q", name, body, r.status, r.body, want)
	}
}

func expectErr(t *testing.T, r reply, status int, kind string) {
	t.Helper()
	if r.status != status || r.kind != kind {
		t.Fatalf("got %d %.300q, want %d %s", r.status, r.body, status, kind)
	}
}

func status(t *testing.T) map[string]int {
	t.Helper()
	resp, err := http.Get(eng.base + "/_/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct {
		Functions []struct {
			Name string
			Idle int
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	idle := map[string]int{}
	for _, f := range s.Functions {
		idle[f.Name] = f.Idle
	}
	return idle
}
