// Package npy reads and writes NumPy's .npy files for Go slices of the
// numeric dtypes: bool, the signed and unsigned integers of 8 to 64 bits,
// float16 (as Float16, its IEEE bits), float32, float64, complex64 and
// complex128.
//
// Write produces the bytes np.save produces for the same array (version
// 1.0, or 2.0 for a header over 64 KiB; data aligned to 64 bytes, the
// growth-axis padding of NumPy 1.23 and later). Read accepts versions 1.0,
// 2.0 and 3.0, either byte order and Fortran order (returned in C order).
package npy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Float16 is an IEEE 754 half-precision number, as its bits (NumPy's
// float16, '<f2'). Go has no float16 type; this one only carries the bits.
type Float16 uint16

// Numeric is the element types a .npy file can hold here.
type Numeric interface {
	bool | uint8 | int8 | int16 | int32 | int64 | uint16 | uint32 | uint64 |
		Float16 | float32 | float64 | complex64 | complex128
}

// Header describes a .npy file: its dtype as NumPy spells it (e.g. "<f4"),
// whether the data is in Fortran order, and the shape.
type Header struct {
	Descr   string
	Fortran bool
	Shape   []int64
}

const (
	magic = "\x93NUMPY"
	// np.save aligns the data to this many bytes (ARRAY_ALIGN).
	arrayAlign = 64
	// NumPy pads the header for the growth axis to this many digits.
	growthAxisMaxDigits = 21
	// The largest header Read accepts (NumPy itself refuses over 10000
	// bytes unless told otherwise; the server refuses over 64 KiB).
	maxHeaderBytes = 1 << 20
	// Elements encoded or decoded per step: bounds the scratch memory.
	stepElements = 1 << 16
)

// NumElements is the product of the shape (1 for a scalar).
func (h Header) NumElements() (int64, error) {
	n := int64(1)
	for _, d := range h.Shape {
		if d < 0 {
			return 0, fmt.Errorf("npy: negative dimension %d in shape %v", d, h.Shape)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("npy: shape %v overflows", h.Shape)
		}
		n *= d
	}
	return n, nil
}

// ItemSize is the bytes per element of the header's dtype.
func (h Header) ItemSize() (int, error) {
	_, size, _, err := parseDescr(h.Descr)
	return size, err
}

// DataBytes is NumElements times ItemSize: the bytes after the header.
func (h Header) DataBytes() (int64, error) {
	n, err := h.NumElements()
	if err != nil {
		return 0, err
	}
	size, err := h.ItemSize()
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64/int64(size) {
		return 0, fmt.Errorf("npy: shape %v overflows", h.Shape)
	}
	return n * int64(size), nil
}

// Descr is NumPy's little-endian descr of T ("|b1", "<i4", "<c16", ...).
func Descr[T Numeric]() string {
	var zero T
	switch any(zero).(type) {
	case bool:
		return "|b1"
	case uint8:
		return "|u1"
	case int8:
		return "|i1"
	case int16:
		return "<i2"
	case int32:
		return "<i4"
	case int64:
		return "<i8"
	case uint16:
		return "<u2"
	case uint32:
		return "<u4"
	case uint64:
		return "<u8"
	case Float16:
		return "<f2"
	case float32:
		return "<f4"
	case float64:
		return "<f8"
	case complex64:
		return "<c8"
	default: // complex128
		return "<c16"
	}
}

// parseDescr splits a descr into its kind ('b', 'i', 'u', 'f', 'c'), item
// size and byte order.
func parseDescr(descr string) (byte, int, binary.ByteOrder, error) {
	bad := fmt.Errorf("npy: unsupported dtype %q", descr)
	if len(descr) < 3 {
		return 0, 0, nil, bad
	}
	var order binary.ByteOrder = binary.LittleEndian
	switch descr[0] {
	case '<', '|', '=':
	case '>':
		order = binary.BigEndian
	default:
		return 0, 0, nil, bad
	}
	kind := descr[1]
	size, err := strconv.Atoi(descr[2:])
	if err != nil {
		return 0, 0, nil, bad
	}
	ok := false
	switch kind {
	case 'b':
		ok = size == 1
	case 'i', 'u':
		ok = size == 1 || size == 2 || size == 4 || size == 8
	case 'f':
		ok = size == 2 || size == 4 || size == 8
	case 'c':
		ok = size == 8 || size == 16
	}
	if !ok {
		return 0, 0, nil, bad
	}
	return kind, size, order, nil
}

func shapeRepr(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	if len(shape) == 1 {
		return "(" + parts[0] + ",)"
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// EncodeHeader is the header np.save writes for an array of this dtype
// (descr) and shape: magic, version, length and the padded dict.
func EncodeHeader(h Header) ([]byte, error) {
	if _, _, _, err := parseDescr(h.Descr); err != nil {
		return nil, err
	}
	if _, err := h.NumElements(); err != nil {
		return nil, err
	}
	order := "False"
	if h.Fortran {
		order = "True"
	}
	text := "{'descr': '" + h.Descr + "', 'fortran_order': " + order +
		", 'shape': " + shapeRepr(h.Shape) + ", }"
	if len(h.Shape) > 0 {
		axis := h.Shape[0]
		if h.Fortran {
			axis = h.Shape[len(h.Shape)-1]
		}
		if digits := len(strconv.FormatInt(axis, 10)); digits < growthAxisMaxDigits {
			text += strings.Repeat(" ", growthAxisMaxDigits-digits)
		}
	}
	major, preamble := byte(1), len(magic)+2+2
	withNewline := len(text) + 1
	pad := arrayAlign - (preamble+withNewline)%arrayAlign
	if withNewline+pad > 0xFFFF {
		major, preamble = 2, len(magic)+2+4
		pad = arrayAlign - (preamble+withNewline)%arrayAlign
	}
	headerLen := withNewline + pad
	out := make([]byte, 0, preamble+headerLen)
	out = append(out, magic...)
	out = append(out, major, 0)
	if major == 1 {
		out = binary.LittleEndian.AppendUint16(out, uint16(headerLen))
	} else {
		out = binary.LittleEndian.AppendUint32(out, uint32(headerLen))
	}
	out = append(out, text...)
	out = append(out, strings.Repeat(" ", pad)...)
	return append(out, '\n'), nil
}

// ReadHeader reads a .npy header from r, leaving r at the first data byte.
func ReadHeader(r io.Reader) (Header, error) {
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil {
		return Header{}, fmt.Errorf("npy: reading the header: %w", unexpected(err))
	}
	if string(pre[:6]) != magic {
		return Header{}, errors.New("npy: not a .npy file (no \\x93NUMPY magic)")
	}
	var n int
	switch pre[6] {
	case 1:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return Header{}, fmt.Errorf("npy: reading the header: %w", unexpected(err))
		}
		n = int(binary.LittleEndian.Uint16(pre[8:10]))
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return Header{}, fmt.Errorf("npy: reading the header: %w", unexpected(err))
		}
		v := binary.LittleEndian.Uint32(l[:])
		if v > maxHeaderBytes {
			return Header{}, fmt.Errorf("npy: header of %d bytes is over the %d-byte limit", v, maxHeaderBytes)
		}
		n = int(v)
	default:
		return Header{}, fmt.Errorf("npy: unsupported version %d.%d", pre[6], pre[7])
	}
	text := make([]byte, n)
	if _, err := io.ReadFull(r, text); err != nil {
		return Header{}, fmt.Errorf("npy: reading the header: %w", unexpected(err))
	}
	return parseHeaderText(string(text))
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Write writes data as a .npy file of the given shape (C order), as
// np.save does. len(data) must equal the shape's element count; a nil
// shape means a 1-D array of len(data).
func Write[T Numeric](w io.Writer, data []T, shape []int64) error {
	if shape == nil {
		shape = []int64{int64(len(data))}
	}
	h := Header{Descr: Descr[T](), Shape: shape}
	n, err := h.NumElements()
	if err != nil {
		return err
	}
	if n != int64(len(data)) {
		return fmt.Errorf("npy: %d elements for shape %v, which holds %d", len(data), shape, n)
	}
	header, err := EncodeHeader(h)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	if _, err := bw.Write(header); err != nil {
		return err
	}
	if err := WriteData(bw, data); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteData writes the elements alone, little-endian (the RAW format).
func WriteData[T Numeric](w io.Writer, data []T) error {
	for start := 0; start < len(data); start += stepElements {
		end := start + stepElements
		if end > len(data) {
			end = len(data)
		}
		if err := binary.Write(w, binary.LittleEndian, data[start:end]); err != nil {
			return err
		}
	}
	return nil
}

// Read reads a .npy file whose dtype is T's (in either byte order) and
// returns its elements in C order with its header. A file of another dtype
// is an error naming both: Read does not convert.
func Read[T Numeric](r io.Reader) ([]T, Header, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	h, err := ReadHeader(br)
	if err != nil {
		return nil, h, err
	}
	kind, size, order, err := parseDescr(h.Descr)
	if err != nil {
		return nil, h, err
	}
	want := Descr[T]()
	if string(kind)+strconv.Itoa(size) != want[1:] {
		return nil, h, fmt.Errorf("npy: the file holds %s, not %s", h.Descr, want)
	}
	n, err := h.NumElements()
	if err != nil {
		return nil, h, err
	}
	if int64(int(n)) != n {
		return nil, h, fmt.Errorf("npy: shape %v is too large for this platform", h.Shape)
	}
	data := make([]T, n)
	if err := ReadData(br, order, data); err != nil {
		return nil, h, err
	}
	if h.Fortran && len(h.Shape) > 1 {
		data = fortranToC(data, h.Shape)
	}
	return data, h, nil
}

// ReadData fills data with elements in the given byte order from r.
func ReadData[T Numeric](r io.Reader, order binary.ByteOrder, data []T) error {
	for start := 0; start < len(data); start += stepElements {
		end := start + stepElements
		if end > len(data) {
			end = len(data)
		}
		if err := binary.Read(r, order, data[start:end]); err != nil {
			return fmt.Errorf("npy: reading the data: %w", unexpected(err))
		}
	}
	return nil
}

// fortranToC reorders column-major data of this shape into row-major.
func fortranToC[T any](data []T, shape []int64) []T {
	out := make([]T, len(data))
	idx := make([]int64, len(shape))
	// Fortran strides, in elements.
	strides := make([]int64, len(shape))
	s := int64(1)
	for i := range shape {
		strides[i] = s
		s *= shape[i]
	}
	for i := range out {
		var off int64
		for d := range idx {
			off += idx[d] * strides[d]
		}
		out[i] = data[off]
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out
}

// parseHeaderText parses the header's Python dict literal:
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
func parseHeaderText(text string) (Header, error) {
	p := &parser{s: strings.TrimRight(text, " \n\x00")}
	fail := func(why string) (Header, error) {
		return Header{}, fmt.Errorf("npy: malformed header %q: %s", text, why)
	}
	var h Header
	seen := map[string]bool{}
	if !p.eat('{') {
		return fail("not a dict")
	}
	for !p.eat('}') {
		key, ok := p.str()
		if !ok || !p.eat(':') {
			return fail("expected 'key':")
		}
		if seen[key] {
			return fail("repeated key " + key)
		}
		seen[key] = true
		switch key {
		case "descr":
			if h.Descr, ok = p.str(); !ok {
				return fail("'descr' must be a string")
			}
		case "fortran_order":
			switch {
			case p.word("True"):
				h.Fortran = true
			case p.word("False"):
			default:
				return fail("'fortran_order' must be True or False")
			}
		case "shape":
			if h.Shape, ok = p.tuple(); !ok {
				return fail("'shape' must be a tuple of integers")
			}
			if h.Shape == nil {
				h.Shape = []int64{}
			}
		default:
			return fail("unknown key " + key)
		}
		if !p.eat(',') && !p.peek('}') {
			return fail("expected , or }")
		}
	}
	p.skip()
	if p.i != len(p.s) {
		return fail("text after the dict")
	}
	if !seen["descr"] || !seen["fortran_order"] || !seen["shape"] {
		return fail("the keys are 'descr', 'fortran_order' and 'shape'")
	}
	if _, _, _, err := parseDescr(h.Descr); err != nil {
		return Header{}, err
	}
	if _, err := h.NumElements(); err != nil {
		return Header{}, err
	}
	return h, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) skip() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n') {
		p.i++
	}
}

func (p *parser) peek(c byte) bool {
	p.skip()
	return p.i < len(p.s) && p.s[p.i] == c
}

func (p *parser) eat(c byte) bool {
	if p.peek(c) {
		p.i++
		return true
	}
	return false
}

func (p *parser) word(w string) bool {
	p.skip()
	if strings.HasPrefix(p.s[p.i:], w) {
		p.i += len(w)
		return true
	}
	return false
}

func (p *parser) str() (string, bool) {
	p.skip()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", false
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", false
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return v, true
}

func (p *parser) tuple() ([]int64, bool) {
	if !p.eat('(') {
		return nil, false
	}
	var dims []int64
	for !p.eat(')') {
		p.skip()
		start := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		d, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
		if err != nil {
			return nil, false
		}
		dims = append(dims, d)
		if !p.eat(',') && !p.peek(')') {
			return nil, false
		}
	}
	return dims, true
}
