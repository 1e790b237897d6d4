package tensorcast

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"tensorcast/npy"
	"tensorcast/v1pb"
)

// PutOptions describe an upload. For FORMAT_RAW (the default) DType and
// Shape describe the data (the elements, little-endian, C order); for
// FORMAT_NPY the .npy header does, and DType and Shape may be left unset.
type PutOptions struct {
	Format       Format
	DType        DType
	Shape        []int64
	Device       string // "" = "cpu"
	RequiresGrad bool
	Name         string
	TTL          time.Duration // 0 = the server's --default-ttl
	// TotalBytes, when known (> 0), lets the server refuse a mismatch early.
	TotalBytes int64
}

// Put uploads a tensor whose bytes r yields until io.EOF, in messages of at
// most 1 MiB. Nothing is stored unless every byte arrives and the count
// matches; an error of r cancels the upload and is returned (wrapped).
func (c *Client) Put(ctx context.Context, r io.Reader, opts PutOptions) (*TensorInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.stub.Put(ctx)
	if err != nil {
		return nil, err
	}
	header := &v1pb.PutHeader{Dtype: opts.DType, Shape: opts.Shape, Device: opts.Device,
		RequiresGrad: opts.RequiresGrad, Name: opts.Name, TtlSeconds: seconds(opts.TTL),
		Format: opts.Format, TotalBytes: opts.TotalBytes}
	err = stream.Send(&v1pb.PutRequest{Payload: &v1pb.PutRequest_Header{Header: header}})
	buf := make([]byte, c.putChunk)
	data := &v1pb.PutRequest_Data{}
	msg := &v1pb.PutRequest{Payload: data}
	for err == nil {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			// Send encodes the message before it returns, so buf is free
			// for the next read once it does.
			data.Data = buf[:n]
			err = stream.Send(msg)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			cancel() // the server stores nothing from a cancelled Put
			return nil, fmt.Errorf("tensorcast: reading the data to put: %w", rerr)
		}
	}
	// io.EOF from Send: the server ended the call; CloseAndRecv says why.
	if err != nil && err != io.EOF {
		return nil, err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return resp.Tensor, nil
}

// PutBytes uploads data (RAW elements, or a whole .npy file with
// FORMAT_NPY).
func (c *Client) PutBytes(ctx context.Context, data []byte, opts PutOptions) (*TensorInfo, error) {
	opts.TotalBytes = int64(len(data))
	return c.Put(ctx, bytes.NewReader(data), opts)
}

// PutNpyFile uploads the .npy file at path, streamed: the server reads its
// dtype and shape (and byte order, Fortran order) from its header.
func (c *Client) PutNpyFile(ctx context.Context, path string, opts PutOptions) (*TensorInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tensorcast: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		opts.TotalBytes = st.Size()
	}
	opts.Format = v1pb.Format_FORMAT_NPY
	return c.Put(ctx, f, opts)
}

// PutSlice uploads a Go slice as a tensor of the matching dtype and the
// given shape (nil: 1-D), as RAW little-endian elements.
func PutSlice[T npy.Numeric](ctx context.Context, c *Client, data []T, shape []int64,
	opts PutOptions) (*TensorInfo, error) {
	if shape == nil {
		shape = []int64{int64(len(data))}
	}
	var buf bytes.Buffer
	if err := npy.WriteData(&buf, data); err != nil {
		return nil, err
	}
	opts.Format = v1pb.Format_FORMAT_RAW
	opts.DType = DTypeOf[T]()
	opts.Shape = shape
	return c.PutBytes(ctx, buf.Bytes(), opts)
}

// DTypeOf is the tensorcast dtype of a Go element type.
func DTypeOf[T npy.Numeric]() DType {
	switch npy.Descr[T]()[1:] {
	case "b1":
		return v1pb.DType_DTYPE_BOOL
	case "u1":
		return v1pb.DType_DTYPE_UINT8
	case "i1":
		return v1pb.DType_DTYPE_INT8
	case "i2":
		return v1pb.DType_DTYPE_INT16
	case "i4":
		return v1pb.DType_DTYPE_INT32
	case "i8":
		return v1pb.DType_DTYPE_INT64
	case "u2":
		return v1pb.DType_DTYPE_UINT16
	case "u4":
		return v1pb.DType_DTYPE_UINT32
	case "u8":
		return v1pb.DType_DTYPE_UINT64
	case "f2":
		return v1pb.DType_DTYPE_FLOAT16
	case "f4":
		return v1pb.DType_DTYPE_FLOAT32
	case "f8":
		return v1pb.DType_DTYPE_FLOAT64
	case "c8":
		return v1pb.DType_DTYPE_COMPLEX64
	default:
		return v1pb.DType_DTYPE_COMPLEX128
	}
}

// FetchOptions shape a Fetch: the format (FORMAT_NPY by default, a whole
// .npy file; FORMAT_RAW, the elements alone), a cast in the stream, the
// conversions of a PyTorch proxy (without Detach/CPU/Force, Fetch refuses
// as Tensor.numpy() does: FAILED_PRECONDITION), a byte range, and the
// bytes per message (0 = the server's --chunk-bytes).
type FetchOptions struct {
	Format     Format
	DType      DType
	Detach     bool
	CPU        bool
	Force      bool
	Offset     int64
	Length     int64
	ChunkBytes int64
}

// Fetch streams a tensor's bytes into w as they arrive: memory stays at a
// few messages whatever the tensor's size. It returns the stream's header
// (the tensor as it arrives, the total and the range sent). An error of w
// cancels the stream and is returned (wrapped); a stream that ends short
// is codes.DataLoss.
func (c *Client) Fetch(ctx context.Context, ref string, w io.Writer, opts FetchOptions) (*v1pb.FetchHeader, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.stub.Fetch(ctx, &v1pb.FetchRequest{Ref: ref, Format: opts.Format,
		Dtype: opts.DType, Detach: opts.Detach, Cpu: opts.CPU, Force: opts.Force,
		Offset: opts.Offset, Length: opts.Length, ChunkBytes: opts.ChunkBytes},
		grpc.ForceCodec(fetchCodec{}))
	if err != nil {
		return nil, err
	}
	var header *v1pb.FetchHeader
	var received int64
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if msg.Header != nil {
			header = msg.Header
		}
		if len(msg.Data) > 0 {
			if _, werr := w.Write(msg.Data); werr != nil {
				cancel()
				return nil, fmt.Errorf("tensorcast: writing the fetched data: %w", werr)
			}
			received += int64(len(msg.Data))
		}
	}
	if header == nil {
		return nil, status.Error(codes.DataLoss, "the stream ended without a header")
	}
	if received != header.Length {
		return nil, status.Errorf(codes.DataLoss, "the stream ended after %d of %d bytes",
			received, header.Length)
	}
	return header, nil
}

// errShortBuffer is what a fixedWriter returns when the data overflows it.
var errShortBuffer = errors.New("the fetched tensor does not fit the buffer")

type fixedWriter struct {
	buf []byte
	n   int
}

func (f *fixedWriter) Write(p []byte) (int, error) {
	if len(p) > len(f.buf)-f.n {
		return 0, fmt.Errorf("%w of %d bytes", errShortBuffer, len(f.buf))
	}
	f.n += copy(f.buf[f.n:], p)
	return len(p), nil
}

// FetchInto fetches into the caller's buffer and returns the bytes
// written; a tensor that does not fit is an error (codes.OutOfRange) and
// the stream is cancelled.
func (c *Client) FetchInto(ctx context.Context, ref string, buf []byte, opts FetchOptions) (int, *v1pb.FetchHeader, error) {
	fw := &fixedWriter{buf: buf}
	h, err := c.Fetch(ctx, ref, fw, opts)
	if errors.Is(err, errShortBuffer) {
		err = status.Error(codes.OutOfRange, err.Error())
	}
	return fw.n, h, err
}

// FetchSlice fetches a tensor as a Go slice of T, cast in the stream to
// T's dtype, with its shape (C order).
func FetchSlice[T npy.Numeric](ctx context.Context, c *Client, ref string, opts FetchOptions) ([]T, []int64, error) {
	opts.Format = v1pb.Format_FORMAT_RAW
	opts.DType = DTypeOf[T]()
	opts.Offset, opts.Length = 0, 0
	var buf bytes.Buffer
	h, err := c.Fetch(ctx, ref, &buf, opts)
	if err != nil {
		return nil, nil, err
	}
	shape := h.GetTensor().GetShape()
	var zero T
	item := int64(binary.Size(zero))
	have := int64(buf.Len())
	n := int64(1)
	for _, d := range shape {
		// Checked against the bytes received, so that a shape that is
		// negative or overflows is an error rather than a panic in make.
		if d < 0 || (d > 0 && n > have/item/d) {
			return nil, nil, status.Errorf(codes.DataLoss,
				"the server sent shape %v for %d bytes of %d-byte elements", shape, have, item)
		}
		n *= d
	}
	if n*item != have {
		return nil, nil, status.Errorf(codes.DataLoss,
			"the server sent shape %v for %d bytes of %d-byte elements", shape, have, item)
	}
	out := make([]T, n)
	if err := npy.ReadData(&buf, binary.LittleEndian, out); err != nil {
		return nil, nil, err
	}
	return out, shape, nil
}

// fetchCodec is the proto codec, except that a FetchResponse's data is a
// view of the received message rather than a copy: one copy less per
// chunk. (gRPC hands each received message to Unmarshal in a buffer of its
// own and does not reuse it.)
type fetchCodec struct{}

func (fetchCodec) Name() string { return "proto" }

func (fetchCodec) Marshal(v interface{}) ([]byte, error) {
	return proto.Marshal(v.(proto.Message))
}

func (fetchCodec) Unmarshal(data []byte, v interface{}) error {
	m, ok := v.(*v1pb.FetchResponse)
	if !ok {
		return encoding.GetCodec("proto").Unmarshal(data, v)
	}
	m.Reset()
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return protowire.ParseError(n)
		}
		data = data[n:]
		if typ == protowire.BytesType && (num == 1 || num == 2) {
			b, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return protowire.ParseError(n)
			}
			data = data[n:]
			if num == 1 {
				m.Data = b
				continue
			}
			if m.Header == nil {
				m.Header = &v1pb.FetchHeader{}
			}
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(b, m.Header); err != nil {
				return err
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, data)
		if n < 0 {
			return protowire.ParseError(n)
		}
		data = data[n:]
	}
	return nil
}
