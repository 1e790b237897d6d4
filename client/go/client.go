// Package tensorcast is a Go client of the tensorcast server's gRPC API
// (proto/tensorcast/v1/tensor_service.proto; docs/go.md).
//
//	c, err := tensorcast.Connect(ctx, "127.0.0.1:50051", tensorcast.Options{})
//	t, err := tensorcast.PutSlice(ctx, c, []float32{1, 2, 3, 4}, []int64{2, 2}, tensorcast.PutOptions{})
//	var out bytes.Buffer
//	_, err = c.Fetch(ctx, t.Handle, &out, tensorcast.FetchOptions{}) // a .npy file
//
// Every error from the server is a gRPC status error carrying the server's
// code and message: status.Code(err) is codes.NotFound,
// codes.FailedPrecondition and so on (Code is a shorthand). Errors of the
// caller's io.Reader or io.Writer are returned as they are (wrapped).
package tensorcast

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"tensorcast/v1pb"
)

// TensorInfo, DType and Format are the proto's types (package v1pb,
// generated from proto/tensorcast/v1/tensor_service.proto).
type (
	TensorInfo = v1pb.TensorInfo
	DType      = v1pb.DType
	Format     = v1pb.Format
)

const (
	// MaxMessageBytes is the largest message the client accepts: the
	// biggest Fetch chunk a server sends (64 MiB) and room for its header.
	MaxMessageBytes = 70 << 20
	// MaxPutChunkBytes is the most data one Put message carries: the
	// server refuses any message over 1 MiB + 64 KiB.
	MaxPutChunkBytes = 1 << 20
)

// Options configure Connect. The zero value is a plaintext connection
// without a token.
type Options struct {
	// Token is sent as `authorization: Bearer TOKEN` on every call (servers
	// run with --auth-tokens).
	Token string
	// TLS, when set, makes the connection TLS with this configuration
	// (TLSConfig builds one from PEM files). Nil: plaintext.
	TLS *tls.Config
	// Timeout bounds each unary call whose context has no deadline; 0
	// means none. Put and Fetch are bounded by their context alone.
	Timeout time.Duration
	// PutChunkBytes is the data per Put message, at most (and by default)
	// MaxPutChunkBytes.
	PutChunkBytes int
	// DialOptions are added to the client's own (grpc.DialContext).
	DialOptions []grpc.DialOption
}

// Client is a connection to one server; safe for concurrent use.
type Client struct {
	conn     *grpc.ClientConn
	stub     v1pb.TensorServiceClient
	opts     Options
	putChunk int
}

// TLSConfig builds a TLS configuration from PEM files: caFile, the
// certificate authority that signed the server's certificate (empty: the
// system's roots), and for mutual TLS the client's certificate and key
// (both or neither).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tensorcast: reading the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tensorcast: %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("tensorcast: the client certificate and key go together")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tensorcast: loading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Connect makes a client of the server at address ("host:port", or any
// target gRPC accepts). Like grpc.DialContext it does not wait for the
// server: the first call says if it cannot be reached (codes.Unavailable).
func Connect(ctx context.Context, address string, opts Options) (*Client, error) {
	c := &Client{opts: opts, putChunk: opts.PutChunkBytes}
	if c.putChunk <= 0 || c.putChunk > MaxPutChunkBytes {
		c.putChunk = MaxPutChunkBytes
	}
	creds := grpc.WithInsecure()
	if opts.TLS != nil {
		creds = grpc.WithTransportCredentials(credentials.NewTLS(opts.TLS))
	}
	dial := []grpc.DialOption{
		creds,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithUnaryInterceptor(c.unary),
		grpc.WithStreamInterceptor(c.stream),
	}
	conn, err := grpc.DialContext(ctx, address, append(dial, opts.DialOptions...)...)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	c.stub = v1pb.NewTensorServiceClient(conn)
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Stub is the generated gRPC client on this connection (token and limits
// included), for what this package does not wrap (OpenSharedMemory,
// EmptyCache's raw response, ...).
func (c *Client) Stub() v1pb.TensorServiceClient { return c.stub }

func (c *Client) withToken(ctx context.Context) context.Context {
	if c.opts.Token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.opts.Token)
}

func (c *Client) unary(ctx context.Context, method string, req, reply interface{},
	cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok && c.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	return invoker(c.withToken(ctx), method, req, reply, cc, callOpts...)
}

func (c *Client) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
	method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(c.withToken(ctx), desc, cc, method, callOpts...)
}

// Code is the gRPC code of err: the server's for its errors, codes.OK for
// nil, codes.Unknown for an error that is not a status (e.g. a Writer's).
func Code(err error) codes.Code { return status.Code(err) }

// Create makes a tensor on the server from a fill or literal values (see
// CreateRequest in the proto).
func (c *Client) Create(ctx context.Context, req *v1pb.CreateRequest) (*TensorInfo, error) {
	r, err := c.stub.Create(ctx, req)
	if err != nil {
		return nil, err
	}
	return r.Tensor, nil
}

// Info describes the tensor named by ref (a handle or a name).
func (c *Client) Info(ctx context.Context, ref string) (*TensorInfo, error) {
	r, err := c.stub.Info(ctx, &v1pb.InfoRequest{Ref: ref})
	if err != nil {
		return nil, err
	}
	return r.Tensor, nil
}

// List returns every tensor (of the caller's tenant) whose name starts with
// namePrefix ("" for all), reading every page.
func (c *Client) List(ctx context.Context, namePrefix string) ([]*TensorInfo, error) {
	var all []*TensorInfo
	req := &v1pb.ListRequest{PageSize: 1000, NamePrefix: namePrefix}
	for {
		r, err := c.stub.List(ctx, req)
		if err != nil {
			return nil, err
		}
		all = append(all, r.Tensors...)
		if r.NextPageToken == "" {
			return all, nil
		}
		req.PageToken = r.NextPageToken
	}
}

// Delete deletes the tensors named by refs, all or none (NOT_FOUND if any
// is unknown), and returns how many it deleted.
func (c *Client) Delete(ctx context.Context, refs ...string) (int, error) {
	r, err := c.stub.Delete(ctx, &v1pb.DeleteRequest{Refs: refs})
	if err != nil {
		return 0, err
	}
	return int(r.Deleted), nil
}

// NewOptions name the handle that Detach or To makes.
type NewOptions struct {
	Name string
	// TTL until the server may reclaim it; 0 = the server's default.
	TTL time.Duration
}

// Detach makes a new handle on the same storage with requires_grad false.
func (c *Client) Detach(ctx context.Context, ref string, opts NewOptions) (*TensorInfo, error) {
	r, err := c.stub.Detach(ctx, &v1pb.DetachRequest{Ref: ref, Name: opts.Name,
		TtlSeconds: seconds(opts.TTL)})
	if err != nil {
		return nil, err
	}
	return r.Tensor, nil
}

// ToOptions say what To converts to: a device ("cpu", "cuda:N"; empty =
// keep) and a dtype (DTYPE_UNSPECIFIED = keep).
type ToOptions struct {
	Device string
	DType  DType
	// Copy even when nothing changes (as .to(copy=True)).
	Copy bool
	NewOptions
}

// To converts a tensor's device and/or dtype, as Tensor.to(): when nothing
// changes and Copy is false, the same tensor comes back.
func (c *Client) To(ctx context.Context, ref string, opts ToOptions) (*TensorInfo, error) {
	r, err := c.stub.To(ctx, &v1pb.ToRequest{Ref: ref, Device: opts.Device, Dtype: opts.DType,
		Copy: opts.Copy, Name: opts.Name, TtlSeconds: seconds(opts.TTL)})
	if err != nil {
		return nil, err
	}
	return r.Tensor, nil
}

// Stats are the server's figures: devices, tensors, streams, version (a
// tenant's own with --auth-tokens and a token without admin).
func (c *Client) Stats(ctx context.Context) (*v1pb.StatsResponse, error) {
	return c.stub.Stats(ctx, &v1pb.StatsRequest{})
}

// EmptyCache gives cached pool blocks back to the system (device "" =
// every device) and returns the bytes released.
func (c *Client) EmptyCache(ctx context.Context, device string) (int64, error) {
	r, err := c.stub.EmptyCache(ctx, &v1pb.EmptyCacheRequest{Device: device})
	if err != nil {
		return 0, err
	}
	return r.ReleasedBytes, nil
}

// ParseDType reads a dtype as NumPy or PyTorch names it ("float32",
// "int64", "bool", "bfloat16", ...).
func ParseDType(name string) (DType, error) {
	v, ok := v1pb.DType_value["DTYPE_"+strings.ToUpper(name)]
	if !ok || v == 0 {
		return 0, status.Errorf(codes.InvalidArgument, "unknown dtype %q", name)
	}
	return DType(v), nil
}

// DTypeName is the lower-case name of a dtype ("float32").
func DTypeName(d DType) string {
	return strings.ToLower(strings.TrimPrefix(d.String(), "DTYPE_"))
}

func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}
