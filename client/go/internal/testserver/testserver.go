// Package testserver starts the real tensorcast-server for the Go tests:
// $TENSORCAST_SERVER_BIN (make test-go sets it to the build's), on
// 127.0.0.1 and a free port the server picks and writes to --port-file,
// stopped with SIGTERM when the test ends. With $TENSORCAST_TEST_SERVER
// (HOST:PORT) Start returns that running server instead, when the test
// asks for no flags of its own.
package testserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a running server.
type Server struct {
	Address string
	Log     string // its log file ("" for an external server)
	cmd     *exec.Cmd
}

// Start starts a server with these flags, stopped at the end of t.
func Start(t testing.TB, flags ...string) *Server {
	t.Helper()
	if addr := os.Getenv("TENSORCAST_TEST_SERVER"); addr != "" && len(flags) == 0 {
		return &Server{Address: addr}
	}
	bin := os.Getenv("TENSORCAST_SERVER_BIN")
	if bin == "" {
		t.Fatal("TENSORCAST_SERVER_BIN is not set: run the Go tests with make test-go " +
			"(scripts/test_go.sh), or set it to a built tensorcast-server")
	}
	dir := t.TempDir()
	portFile := filepath.Join(dir, "port")
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--listen=127.0.0.1:0", "--port-file=" + portFile,
		"--shutdown-grace=2"}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	s := &Server{Log: logPath, cmd: cmd}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			if text, err := os.ReadFile(logPath); err == nil {
				t.Logf("server log:\n%s", text)
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		text, err := os.ReadFile(portFile)
		if err == nil { // written whole: the server renames it into place
			port, perr := strconv.Atoi(strings.TrimSpace(string(text)))
			if perr == nil && port > 0 {
				s.Address = "127.0.0.1:" + strconv.Itoa(port)
				return s
			}
		}
		select {
		case <-exited:
			text, _ := os.ReadFile(logPath)
			t.Fatalf("tensorcast-server exited (%v): %s", waitErr, text)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("tensorcast-server did not write its port file in 30 s")
		}
	}
}
