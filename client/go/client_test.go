package tensorcast_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"tensorcast"
	"tensorcast/internal/testserver"
	"tensorcast/npy"
	"tensorcast/v1pb"
)

func connect(t *testing.T, addr string, opts tensorcast.Options) *tensorcast.Client {
	t.Helper()
	c, err := tensorcast.Connect(context.Background(), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func start(t *testing.T, flags ...string) (*tensorcast.Client, context.Context) {
	s := testserver.Start(t, append([]string{"--devices=cpu"}, flags...)...)
	return connect(t, s.Address, tensorcast.Options{Timeout: 30 * time.Second}), context.Background()
}

func python(t *testing.T, script string, args ...string) string {
	t.Helper()
	py := os.Getenv("TENSORCAST_PYTHON")
	if py == "" {
		t.Fatal("TENSORCAST_PYTHON is not set: run the Go tests with make test-go")
	}
	out, err := exec.Command(py, append([]string{"-c", script}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// wantCode fails unless err is a status error with this code whose message
// contains text.
func wantCode(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || !strings.Contains(st.Message(), text) {
		t.Errorf("%s: got %v, want %v containing %q", what, err, code, text)
	}
}

func TestUnaryCalls(t *testing.T) {
	c, ctx := start(t)
	a, err := c.Create(ctx, &v1pb.CreateRequest{Dtype: v1pb.DType_DTYPE_FLOAT32,
		Shape: []int64{2, 3}, Name: "a", RequiresGrad: true,
		Init: &v1pb.CreateRequest_Arange{Arange: &v1pb.Arange{Start: 1, Step: 0.5}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Handle) != 32 || a.Name != "a" || !a.RequiresGrad || a.Nbytes != 24 ||
		!reflect.DeepEqual(a.Shape, []int64{2, 3}) {
		t.Fatalf("created %v", a)
	}
	for _, ref := range []string{"a", a.Handle} {
		info, err := c.Info(ctx, ref)
		if err != nil || info.Handle != a.Handle {
			t.Errorf("Info(%s): %v %v", ref, info, err)
		}
	}
	d, err := c.Detach(ctx, "a", tensorcast.NewOptions{Name: "a-detached"})
	if err != nil || d.RequiresGrad || d.Handle == a.Handle || d.Name != "a-detached" {
		t.Fatalf("Detach: %v %v", d, err)
	}
	got, shape, err := tensorcast.FetchSlice[float32](ctx, c, d.Handle, tensorcast.FetchOptions{})
	if err != nil || !reflect.DeepEqual(got, []float32{1, 1.5, 2, 2.5, 3, 3.5}) ||
		!reflect.DeepEqual(shape, []int64{2, 3}) {
		t.Errorf("detached values %v %v %v", got, shape, err)
	}
	same, err := c.To(ctx, d.Handle, tensorcast.ToOptions{})
	if err != nil || same.Handle != d.Handle {
		t.Errorf("To without a change: %v %v (want the same handle)", same, err)
	}
	i, err := c.To(ctx, d.Handle, tensorcast.ToOptions{DType: v1pb.DType_DTYPE_INT16, Device: "cpu",
		NewOptions: tensorcast.NewOptions{Name: "a-int16", TTL: time.Hour}})
	if err != nil || i.Dtype != v1pb.DType_DTYPE_INT16 || i.Handle == d.Handle || i.ExpiresAtUnixS == 0 {
		t.Fatalf("To int16: %v %v", i, err)
	}
	ints, _, err := tensorcast.FetchSlice[int16](ctx, c, "a-int16", tensorcast.FetchOptions{})
	if err != nil || !reflect.DeepEqual(ints, []int16{1, 1, 2, 2, 3, 3}) {
		t.Errorf("int16 values %v %v", ints, err)
	}
	list, err := c.List(ctx, "a-")
	if err != nil || len(list) != 2 {
		t.Errorf("List(a-): %d tensors, %v", len(list), err)
	}
	all, err := c.List(ctx, "")
	if err != nil || len(all) != 3 {
		t.Errorf("List: %d tensors, %v", len(all), err)
	}
	stats, err := c.Stats(ctx)
	if err != nil || stats.Tensors != 3 || stats.Version == "" || len(stats.Devices) != 1 ||
		stats.Devices[0].Device != "cpu" || stats.Devices[0].AllocatedBytes <= 0 {
		t.Errorf("Stats: %v %v", stats, err)
	}
	if _, err := c.EmptyCache(ctx, ""); err != nil {
		t.Errorf("EmptyCache: %v", err)
	}
	// Delete is all or nothing.
	_, err = c.Delete(ctx, "a", "no-such")
	wantCode(t, "Delete with an unknown ref", err, codes.NotFound, "no-such")
	n, err := c.Delete(ctx, "a", "a-detached", i.Handle)
	if err != nil || n != 3 {
		t.Errorf("Delete: %d %v", n, err)
	}
	_, err = c.Info(ctx, "a")
	wantCode(t, "Info after Delete", err, codes.NotFound, "a")
	if dt, err := tensorcast.ParseDType("bfloat16"); err != nil || dt != v1pb.DType_DTYPE_BFLOAT16 ||
		tensorcast.DTypeName(dt) != "bfloat16" {
		t.Errorf("ParseDType: %v %v", dt, err)
	}
}

// A Reader that yields its bytes a few at a time, in odd sizes.
type dribble struct {
	data []byte
	step int
}

func (d *dribble) Read(p []byte) (int, error) {
	if len(d.data) == 0 {
		return 0, io.EOF
	}
	n := d.step
	if n > len(p) {
		n = len(p)
	}
	if n > len(d.data) {
		n = len(d.data)
	}
	copy(p, d.data[:n])
	d.data = d.data[n:]
	return n, nil
}

func TestPutAndFetch(t *testing.T) {
	c, ctx := start(t)
	// 3 MiB + 12 bytes of float64, from a Reader of unknown length that
	// yields 777 bytes at a time: several full 1 MiB messages.
	n := (3<<20)/8 + 3
	values := make([]float64, n)
	for i := range values {
		values[i] = float64(i)*0.5 - 7
	}
	var raw bytes.Buffer
	if err := npy.WriteData(&raw, values); err != nil {
		t.Fatal(err)
	}
	src := raw.Bytes()
	info, err := c.Put(ctx, &dribble{data: src, step: 777}, tensorcast.PutOptions{
		DType: v1pb.DType_DTYPE_FLOAT64, Shape: []int64{int64(n)}, Name: "big"})
	if err != nil || info.Nbytes != int64(len(src)) {
		t.Fatalf("Put: %v %v", info, err)
	}
	got, _, err := tensorcast.FetchSlice[float64](ctx, c, "big", tensorcast.FetchOptions{})
	if err != nil || !reflect.DeepEqual(got, values) {
		t.Fatalf("FetchSlice: %d values, %v", len(got), err)
	}
	// Cast in the stream; a small chunk size means many messages.
	f32, _, err := tensorcast.FetchSlice[float32](ctx, c, "big",
		tensorcast.FetchOptions{ChunkBytes: 4096})
	if err != nil || len(f32) != n || f32[n-1] != float32(values[n-1]) {
		t.Errorf("float32 cast: %v", err)
	}
	// Into the caller's buffer: exactly, then too small.
	buf := make([]byte, len(src))
	m, h, err := c.FetchInto(ctx, "big", buf, tensorcast.FetchOptions{Format: v1pb.Format_FORMAT_RAW})
	if err != nil || m != len(src) || !bytes.Equal(buf, src) || h.TotalBytes != int64(len(src)) {
		t.Errorf("FetchInto: %d %v", m, err)
	}
	_, _, err = c.FetchInto(ctx, "big", buf[:100], tensorcast.FetchOptions{Format: v1pb.Format_FORMAT_RAW})
	wantCode(t, "FetchInto a small buffer", err, codes.OutOfRange, "does not fit")
	// A byte range, as for resuming.
	var part bytes.Buffer
	h, err = c.Fetch(ctx, "big", &part, tensorcast.FetchOptions{Format: v1pb.Format_FORMAT_RAW,
		Offset: 1000, Length: 5000})
	if err != nil || h.Offset != 1000 || h.Length != 5000 || !bytes.Equal(part.Bytes(), src[1000:6000]) {
		t.Errorf("range: %v %v", h, err)
	}
	// PutBytes, PutSlice with a shape.
	b, err := c.PutBytes(ctx, []byte{1, 0, 0, 0, 2, 0, 0, 0}, tensorcast.PutOptions{
		DType: v1pb.DType_DTYPE_INT32, Shape: []int64{2}})
	if err != nil || b.Numel != 2 {
		t.Errorf("PutBytes: %v %v", b, err)
	}
	cplx, err := tensorcast.PutSlice(ctx, c, []complex64{1 + 2i, 3 - 4i}, []int64{1, 2},
		tensorcast.PutOptions{Name: "c"})
	if err != nil || cplx.Dtype != v1pb.DType_DTYPE_COMPLEX64 {
		t.Fatalf("PutSlice: %v %v", cplx, err)
	}
	back, shape, err := tensorcast.FetchSlice[complex64](ctx, c, "c", tensorcast.FetchOptions{})
	if err != nil || !reflect.DeepEqual(back, []complex64{1 + 2i, 3 - 4i}) ||
		!reflect.DeepEqual(shape, []int64{1, 2}) {
		t.Errorf("complex64 back: %v %v %v", back, shape, err)
	}
}

// .npy files: NumPy's (big-endian, Fortran order) uploaded from disk, and
// Fetch's .npy output loaded by NumPy; Go's npy.Write output is what the
// server sends back for the same tensor.
func TestNpyFilesWithNumPy(t *testing.T) {
	c, ctx := start(t)
	dir := t.TempDir()
	python(t, `
import sys
import numpy as np
a = (np.arange(12, dtype=np.float64) * 1.5 - 4).reshape(3, 4)
np.save(sys.argv[1] + "/be.npy", a.astype(">f8"))
np.save(sys.argv[1] + "/f.npy", np.asfortranarray(a.astype(np.int32)))
`, dir)
	want := make([]float64, 12)
	for i := range want {
		want[i] = float64(i)*1.5 - 4
	}
	be, err := c.PutNpyFile(ctx, filepath.Join(dir, "be.npy"), tensorcast.PutOptions{Name: "be"})
	if err != nil || be.Dtype != v1pb.DType_DTYPE_FLOAT64 || !reflect.DeepEqual(be.Shape, []int64{3, 4}) {
		t.Fatalf("PutNpyFile big-endian: %v %v", be, err)
	}
	got, _, err := tensorcast.FetchSlice[float64](ctx, c, "be", tensorcast.FetchOptions{})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("big-endian values %v %v", got, err)
	}
	if _, err := c.PutNpyFile(ctx, filepath.Join(dir, "f.npy"), tensorcast.PutOptions{Name: "f"}); err != nil {
		t.Fatal(err)
	}
	ints, _, err := tensorcast.FetchSlice[int32](ctx, c, "f", tensorcast.FetchOptions{})
	if err != nil || ints[1] != -2 || ints[4] != 2 || ints[11] != 12 {
		t.Errorf("Fortran-order values %v %v", ints, err)
	}
	// The server's .npy, streamed into a file, as NumPy reads it.
	out, err := os.Create(filepath.Join(dir, "fetched.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(ctx, "f", out, tensorcast.FetchOptions{DType: v1pb.DType_DTYPE_FLOAT32}); err != nil {
		t.Fatal(err)
	}
	out.Close()
	if r := python(t, `
import sys
import numpy as np
a = np.load(sys.argv[1] + "/fetched.npy")
want = (np.arange(12) * 1.5 - 4).reshape(3, 4).astype(np.int32).astype(np.float32)
np.testing.assert_array_equal(a, want)
print(a.dtype, a.shape, a.flags["C_CONTIGUOUS"])
`, dir); r != "float32 (3, 4) True" {
		t.Errorf("NumPy loaded %s", r)
	}
	// npy.Write's bytes and the server's .npy of the same tensor are equal.
	var mine bytes.Buffer
	if err := npy.Write(&mine, want, []int64{3, 4}); err != nil {
		t.Fatal(err)
	}
	var theirs bytes.Buffer
	if _, err := c.Fetch(ctx, "be", &theirs, tensorcast.FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine.Bytes(), theirs.Bytes()) {
		t.Errorf("npy.Write and the server's .npy differ:\n%q\n%q", mine.Bytes(), theirs.Bytes())
	}
	back, err := c.PutBytes(ctx, mine.Bytes(), tensorcast.PutOptions{Format: v1pb.Format_FORMAT_NPY})
	if err != nil || !reflect.DeepEqual(back.Shape, []int64{3, 4}) {
		t.Errorf("PutBytes of a .npy: %v %v", back, err)
	}
}

type failingReader struct{ left int }

var errSource = errors.New("the source broke")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errSource
	}
	n := len(p)
	if n > f.left {
		n = f.left
	}
	f.left -= n
	return n, nil
}

type failingWriter struct{ calls int }

var errSink = errors.New("the sink broke")

func (f *failingWriter) Write(p []byte) (int, error) {
	f.calls++
	if f.calls > 1 {
		return 0, errSink
	}
	return len(p), nil
}

func TestErrors(t *testing.T) {
	c, ctx := start(t)
	_, err := c.Info(ctx, "nothing-here")
	wantCode(t, "Info of an unknown name", err, codes.NotFound, "nothing-here")
	_, err = c.Fetch(ctx, "0123456789abcdef0123456789abcdef", io.Discard, tensorcast.FetchOptions{})
	wantCode(t, "Fetch of an unknown handle", err, codes.NotFound, "")
	_, err = c.PutBytes(ctx, make([]byte, 10), tensorcast.PutOptions{
		DType: v1pb.DType_DTYPE_FLOAT32, Shape: []int64{3}})
	wantCode(t, "Put with the wrong byte count", err, codes.InvalidArgument, "")
	_, err = c.Create(ctx, &v1pb.CreateRequest{Dtype: v1pb.DType_DTYPE_FLOAT32, Shape: []int64{-1},
		Init: &v1pb.CreateRequest_Zeros{Zeros: &v1pb.Empty{}}})
	wantCode(t, "Create with a negative shape", err, codes.InvalidArgument, "")
	_, err = c.PutBytes(ctx, []byte("\x93NUMPY\x01\x00garbage"), tensorcast.PutOptions{Format: v1pb.Format_FORMAT_NPY})
	wantCode(t, "Put of a malformed .npy", err, codes.InvalidArgument, "")
	if _, err := tensorcast.PutSlice(ctx, c, []int8{1}, nil, tensorcast.PutOptions{Name: "dup"}); err != nil {
		t.Fatal(err)
	}
	_, err = tensorcast.PutSlice(ctx, c, []int8{1}, nil, tensorcast.PutOptions{Name: "dup"})
	wantCode(t, "a taken name", err, codes.AlreadyExists, "dup")
	_, err = c.Create(ctx, &v1pb.CreateRequest{Dtype: v1pb.DType_DTYPE_INT32, Shape: []int64{2},
		RequiresGrad: true, Init: &v1pb.CreateRequest_Ones{Ones: &v1pb.Empty{}}})
	wantCode(t, "requires_grad on an integer dtype", err, codes.InvalidArgument,
		"Only Tensors of floating point and complex dtype can require gradients")

	// The .numpy() refusal, with PyTorch's message; Detach lifts it.
	if _, err := c.Create(ctx, &v1pb.CreateRequest{Dtype: v1pb.DType_DTYPE_FLOAT32, Shape: []int64{4},
		RequiresGrad: true, Name: "w", Init: &v1pb.CreateRequest_Ones{Ones: &v1pb.Empty{}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Fetch(ctx, "w", io.Discard, tensorcast.FetchOptions{})
	wantCode(t, "Fetch of a tensor that requires grad", err, codes.FailedPrecondition,
		"Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
	if _, err := c.Fetch(ctx, "w", io.Discard, tensorcast.FetchOptions{Detach: true}); err != nil {
		t.Errorf("Fetch with Detach: %v", err)
	}
	_, err = c.To(ctx, "w", tensorcast.ToOptions{Device: "cuda:7"})
	wantCode(t, "To a device the server lacks", err, codes.FailedPrecondition, "cuda:7")

	// A failing Reader cancels the Put: its error comes back, nothing is stored.
	_, err = c.Put(ctx, &failingReader{left: 3 << 20}, tensorcast.PutOptions{
		DType: v1pb.DType_DTYPE_UINT8, Shape: []int64{8 << 20}, Name: "half"})
	if !errors.Is(err, errSource) {
		t.Errorf("Put from a failing reader: %v", err)
	}
	_, err = c.Info(ctx, "half")
	wantCode(t, "the half-put tensor", err, codes.NotFound, "half")
	// A failing Writer cancels the Fetch: its error comes back.
	if _, err := c.Create(ctx, &v1pb.CreateRequest{Dtype: v1pb.DType_DTYPE_UINT8, Shape: []int64{4 << 20},
		Name: "z", Init: &v1pb.CreateRequest_Zeros{Zeros: &v1pb.Empty{}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Fetch(ctx, "z", &failingWriter{}, tensorcast.FetchOptions{})
	if !errors.Is(err, errSink) || tensorcast.Code(err) != codes.Unknown {
		t.Errorf("Fetch into a failing writer: %v", err)
	}
	if _, err := c.Info(ctx, "z"); err != nil {
		t.Errorf("the server after a cancelled Fetch: %v", err)
	}
}

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	const alice, admin = "alice-token-0123456789abcdef", "admin-token-0123456789abcdef"
	if err := os.WriteFile(tokens, []byte(alice+" alice\n"+admin+" ops admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.Start(t, "--devices=cpu", "--auth-tokens="+tokens)
	ctx := context.Background()
	a := connect(t, s.Address, tensorcast.Options{Token: alice})
	if _, err := tensorcast.PutSlice(ctx, a, []float32{1, 2}, nil, tensorcast.PutOptions{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	st, err := a.Stats(ctx)
	if err != nil || st.GetTenant().GetTenant() != "alice" || st.GetTenant().GetTensors() != 1 {
		t.Errorf("alice's Stats: %v %v", st, err)
	}
	var out bytes.Buffer
	if _, err := a.Fetch(ctx, "x", &out, tensorcast.FetchOptions{}); err != nil {
		t.Errorf("alice's Fetch: %v", err)
	}
	// Another tenant does not see it.
	ops := connect(t, s.Address, tensorcast.Options{Token: admin})
	_, err = ops.Info(ctx, "x")
	wantCode(t, "another tenant's tensor", err, codes.NotFound, "x")
	for name, token := range map[string]string{"a wrong token": "wrong-token-0123456789abcdef", "no token": ""} {
		c := connect(t, s.Address, tensorcast.Options{Token: token})
		_, err := c.Info(ctx, "x")
		wantCode(t, name+" (Info)", err, codes.Unauthenticated, "")
		_, err = c.Fetch(ctx, "x", io.Discard, tensorcast.FetchOptions{})
		wantCode(t, name+" (Fetch)", err, codes.Unauthenticated, "")
		_, err = tensorcast.PutSlice(ctx, c, []int8{1}, nil, tensorcast.PutOptions{})
		wantCode(t, name+" (Put)", err, codes.Unauthenticated, "")
	}
}

// writePEM writes a DER block as PEM.
func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A CA and a server certificate for 127.0.0.1, made here.
func makeCerts(t *testing.T, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "go test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, "server.key"), "PRIVATE KEY", keyDER)
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	makeCerts(t, dir)
	s := testserver.Start(t, "--devices=cpu", "--tls-cert="+filepath.Join(dir, "server.pem"),
		"--tls-key="+filepath.Join(dir, "server.key"))
	ctx := context.Background()
	cfg, err := tensorcast.TLSConfig(filepath.Join(dir, "ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, s.Address, tensorcast.Options{TLS: cfg})
	info, err := tensorcast.PutSlice(ctx, c, []uint16{7, 8, 9}, nil, tensorcast.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := tensorcast.FetchSlice[uint16](ctx, c, info.Handle, tensorcast.FetchOptions{})
	if err != nil || !reflect.DeepEqual(got, []uint16{7, 8, 9}) {
		t.Errorf("over TLS: %v %v", got, err)
	}
	// Plaintext to a TLS server fails.
	plain := connect(t, s.Address, tensorcast.Options{Timeout: 5 * time.Second})
	if _, err := plain.Stats(ctx); tensorcast.Code(err) != codes.Unavailable {
		t.Errorf("plaintext to a TLS server: %v", err)
	}
	if _, err := tensorcast.TLSConfig(filepath.Join(dir, "server.key"), "", ""); err == nil {
		t.Error("a key file taken for a CA")
	}
}

// hashingWriter hashes what it is given and samples the Go heap as it goes.
type hashingWriter struct {
	h       io.Writer
	n       int64
	writes  int
	maxHeap uint64
}

func (w *hashingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	w.writes++
	if w.writes%8 == 1 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if m.HeapInuse > w.maxHeap {
			w.maxHeap = m.HeapInuse
		}
	}
	return w.h.Write(p)
}

// A 128 MiB tensor streamed into a Writer: the bytes are NumPy's np.save of
// the same array (by SHA-256), and the Go heap stays far below the tensor's
// size.
func TestLargeFetchIsStreamed(t *testing.T) {
	c, ctx := start(t)
	const n = 32 << 20 // float32 elements: 128 MiB
	if _, err := c.Create(ctx, &v1pb.CreateRequest{Dtype: v1pb.DType_DTYPE_FLOAT32, Shape: []int64{n},
		Name: "large", Init: &v1pb.CreateRequest_Arange{Arange: &v1pb.Arange{Start: 0.5, Step: 0.25}}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	want := python(t, `
import hashlib, sys
import numpy as np
a = np.arange(int(sys.argv[2]), dtype=np.float64)
a *= 0.25
a += 0.5
path = sys.argv[1] + "/ref.npy"
np.save(path, a.astype(np.float32))
del a
h = hashlib.sha256()
with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())
`, dir, "33554432")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sum := sha256.New()
	w := &hashingWriter{h: sum}
	h, err := c.Fetch(ctx, "large", w, tensorcast.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		t.Errorf("sha256 %s, NumPy's %s", got, want)
	}
	if w.n != h.TotalBytes || w.n < n*4 {
		t.Errorf("%d bytes written, the header says %d", w.n, h.TotalBytes)
	}
	growth := int64(w.maxHeap) - int64(before.HeapInuse)
	t.Logf("%d bytes in %d writes; heap in use grew by at most %.1f MiB", w.n, w.writes,
		float64(growth)/(1<<20))
	if growth > 48<<20 {
		t.Errorf("the heap grew by %d bytes fetching %d: not streamed", growth, w.n)
	}
}
