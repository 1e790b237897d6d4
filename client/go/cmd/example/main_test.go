package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tensorcast/internal/testserver"
	"tensorcast/npy"
)

// The example runs against a real server and prints what it did.
func TestExample(t *testing.T) {
	s := testserver.Start(t, "--devices=cpu")
	path := filepath.Join(t.TempDir(), "example.npy")
	var out strings.Builder
	if err := run(context.Background(), s.Address, "", path, &out); err != nil {
		t.Fatal(err)
	}
	want := "put example: float32 [2 3]\n" +
		"as int64: [1 2 3 4 5 6] shape [2 3]\n" +
		"wrote " + path + " (152 bytes)\n" +
		"info no-such-tensor: NotFound\n" +
		"listed 2, deleted 2\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, h, err := npy.Read[float32](f)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Shape) != 2 || h.Shape[0] != 2 || h.Shape[1] != 3 || got[0] != 1.5 || got[5] != 6.25 {
		t.Errorf("the .npy file holds %v %v", h.Shape, got)
	}
}
