// Command example shows the Go client: it uploads a Go slice, casts it on
// the server, fetches it back as a slice and as a .npy file, lists and
// deletes. Run it against a server:
//
//	tensorcast-example -addr 127.0.0.1:50051 [-token TOKEN] [-npy out.npy]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"

	"tensorcast"
	"tensorcast/v1pb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "server address")
	token := flag.String("token", os.Getenv("TENSORCAST_TOKEN"), "bearer token")
	npyPath := flag.String("npy", "", "also fetch the tensor into this .npy file")
	flag.Parse()
	if err := run(context.Background(), *addr, *token, *npyPath, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr, token, npyPath string, out io.Writer) error {
	c, err := tensorcast.Connect(ctx, addr, tensorcast.Options{Token: token})
	if err != nil {
		return err
	}
	defer c.Close()

	// A 2x3 float32 tensor from a Go slice.
	t, err := tensorcast.PutSlice(ctx, c, []float32{1.5, 2, 3, 4, 5, 6.25}, []int64{2, 3},
		tensorcast.PutOptions{Name: "example"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "put %s: %s %v\n", t.Name, tensorcast.DTypeName(t.Dtype), t.Shape)

	// A cast on the server makes a new tensor; fetch it as []int64.
	i, err := c.To(ctx, "example", tensorcast.ToOptions{DType: v1pb.DType_DTYPE_INT64})
	if err != nil {
		return err
	}
	values, shape, err := tensorcast.FetchSlice[int64](ctx, c, i.Handle, tensorcast.FetchOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "as int64: %v shape %v\n", values, shape)

	// The original as a .npy file NumPy loads, streamed to disk.
	if npyPath != "" {
		f, err := os.Create(npyPath)
		if err != nil {
			return err
		}
		h, err := c.Fetch(ctx, "example", f, tensorcast.FetchOptions{})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote %s (%d bytes)\n", npyPath, h.TotalBytes)
	}

	// Errors carry the server's gRPC code and message.
	if _, err := c.Info(ctx, "no-such-tensor"); err != nil {
		fmt.Fprintf(out, "info no-such-tensor: %v\n", tensorcast.Code(err))
	}

	all, err := c.List(ctx, "")
	if err != nil {
		return err
	}
	n, err := c.Delete(ctx, t.Handle, i.Handle)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "listed %d, deleted %d\n", len(all), n)
	return nil
}
