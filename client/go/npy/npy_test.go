package npy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"tensorcast/npy"
)

// python runs the repository venv's Python (NumPy) on a script.
func python(t *testing.T, script string, args ...string) string {
	t.Helper()
	py := os.Getenv("TENSORCAST_PYTHON")
	if py == "" {
		t.Fatal("TENSORCAST_PYTHON is not set: run the Go tests with make test-go " +
			"(scripts/test_go.sh), which points it at the venv's python")
	}
	out, err := exec.Command(py, append([]string{"-c", script}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	return string(out)
}

// Checks go.npy against NumPy (values, dtype and np.save's exact bytes),
// then writes NumPy's own files for Go to read: little-endian, big-endian,
// Fortran order, and versions 2.0 and 3.0.
const numpySide = `
import io, sys
import numpy as np
d, dt, expr = sys.argv[1:]
i = np.arange(6)
exp = np.asarray(eval(expr)).astype(dt).reshape(2, 3)
got = np.load(d + "/go.npy")
assert got.dtype == exp.dtype, (got.dtype, exp.dtype)
assert got.shape == (2, 3), got.shape
np.testing.assert_array_equal(got, exp)
b = io.BytesIO()
np.save(b, exp)
assert open(d + "/go.npy", "rb").read() == b.getvalue(), "bytes differ from np.save's"
np.save(d + "/le.npy", exp)
np.save(d + "/be.npy", exp.astype(exp.dtype.newbyteorder(">")))
np.save(d + "/fortran.npy", np.asfortranarray(exp))
for v in (2, 3):
    with open(d + "/v%d.npy" % v, "wb") as f:
        np.lib.format.write_array(f, exp, version=(v, 0))
`

func roundTrip[T npy.Numeric](t *testing.T, dtype, expr string, want []T) {
	t.Run(dtype, func(t *testing.T) {
		dir := t.TempDir()
		var buf bytes.Buffer
		if err := npy.Write(&buf, want, []int64{2, 3}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.npy"), buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		python(t, numpySide, dir, dtype, expr)
		for _, name := range []string{"le", "be", "fortran", "v2", "v3"} {
			f, err := os.Open(filepath.Join(dir, name+".npy"))
			if err != nil {
				t.Fatal(err)
			}
			got, h, err := npy.Read[T](f)
			f.Close()
			if err != nil {
				t.Fatalf("%s.npy: %v", name, err)
			}
			if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(h.Shape, []int64{2, 3}) {
				t.Errorf("%s.npy: got %v shape %v, want %v", name, got, h.Shape, want)
			}
			if h.Fortran != (name == "fortran") {
				t.Errorf("%s.npy: fortran_order %v", name, h.Fortran)
			}
		}
	})
}

func TestRoundTripWithNumPy(t *testing.T) {
	roundTrip(t, "bool", "i % 3 == 0", []bool{true, false, false, true, false, false})
	roundTrip(t, "uint8", "i * 50", []uint8{0, 50, 100, 150, 200, 250})
	roundTrip(t, "int8", "i * 40 - 100", []int8{-100, -60, -20, 20, 60, 100})
	roundTrip(t, "int16", "i * 9000 - 20000", []int16{-20000, -11000, -2000, 7000, 16000, 25000})
	roundTrip(t, "int32", "i * 7 - 2**31", []int32{-1 << 31, -1<<31 + 7, -1<<31 + 14,
		-1<<31 + 21, -1<<31 + 28, -1<<31 + 35})
	roundTrip(t, "int64", "i * 3 - 2**62", []int64{-1 << 62, -1<<62 + 3, -1<<62 + 6,
		-1<<62 + 9, -1<<62 + 12, -1<<62 + 15})
	roundTrip(t, "uint16", "i * 13000", []uint16{0, 13000, 26000, 39000, 52000, 65000})
	roundTrip(t, "uint32", "i * 800000000", []uint32{0, 8e8, 16e8, 24e8, 32e8, 40e8})
	roundTrip(t, "uint64", "np.uint64(2**64 - 1) - i.astype(np.uint64)",
		[]uint64{1<<64 - 1, 1<<64 - 2, 1<<64 - 3, 1<<64 - 4, 1<<64 - 5, 1<<64 - 6})
	// 1, 2, -0.5, 0, 65504 (the largest), inf as IEEE half bits.
	roundTrip(t, "float16", "[1, 2, -0.5, 0, 65504, np.inf]",
		[]npy.Float16{0x3c00, 0x4000, 0xb800, 0, 0x7bff, 0x7c00})
	roundTrip(t, "float32", "i * 0.5 - 1.25", []float32{-1.25, -0.75, -0.25, 0.25, 0.75, 1.25})
	roundTrip(t, "float64", "i / 4 + 1e300", []float64{1e300, 1e300, 1e300, 1e300, 1e300, 1e300})
	roundTrip(t, "complex64", "i * 0.5 - 1j * i",
		[]complex64{0, 0.5 - 1i, 1 - 2i, 1.5 - 3i, 2 - 4i, 2.5 - 5i})
	roundTrip(t, "complex128", "i * 0.25 + 1j * (i + 1)",
		[]complex128{1i, 0.25 + 2i, 0.5 + 3i, 0.75 + 4i, 1 + 5i, 1.25 + 6i})
}

// Scalars, empty arrays and long shapes: the header (its growth-axis
// padding and alignment) equals NumPy's byte for byte.
func TestHeaderMatchesNumPy(t *testing.T) {
	shapes := [][]int64{{}, {0}, {7}, {1, 0, 3}, {123456789012, 0}}
	// Headers of every length modulo 64, so that the growth-axis padding
	// decides where the alignment falls.
	for k := 1; k <= 24; k++ {
		shape := make([]int64, k)
		for i := range shape {
			shape[i] = int64(i % 3)
		}
		shapes = append(shapes, shape)
	}
	dir := t.TempDir()
	for i, shape := range shapes {
		h, err := npy.EncodeHeader(npy.Header{Descr: "<f8", Shape: shape})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), h, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := json.Marshal(shapes)
	python(t, `
import io, json, sys
import numpy as np
d = sys.argv[1]
for k, shape in enumerate(json.loads(sys.argv[2])):
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        b, {"descr": "<f8", "fortran_order": False, "shape": tuple(shape)})
    got = open(d + "/" + str(k), "rb").read()
    assert got == b.getvalue(), (shape, got, b.getvalue())
`, dir, string(list))
}

func TestReadRefusesMalformedFiles(t *testing.T) {
	var good bytes.Buffer
	if err := npy.Write(&good, []int32{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":      {},
		"no magic":   []byte("\x93NUMPX\x01\x00\x10\x00{}"),
		"truncated":  good.Bytes()[:20],
		"short data": good.Bytes()[:good.Len()-1],
		"version 9":  append([]byte("\x93NUMPY\x09\x00"), good.Bytes()[8:]...),
	}
	header := func(dict string) []byte {
		h := []byte("\x93NUMPY\x01\x00")
		h = append(h, byte(len(dict)), byte(len(dict)>>8))
		return append(h, dict...)
	}
	cases["unknown key"] = header("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), 'x': 1}\n")
	cases["missing shape"] = header("{'descr': '<i4', 'fortran_order': False}\n")
	cases["bad dtype"] = header("{'descr': '<U4', 'fortran_order': False, 'shape': (3,)}\n")
	cases["negative dim"] = header("{'descr': '<i4', 'fortran_order': False, 'shape': (-3,)}\n")
	cases["overflow"] = header("{'descr': '<i4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}\n")
	for name, data := range cases {
		if _, _, err := npy.Read[int32](bytes.NewReader(data)); err == nil {
			t.Errorf("%s: read without error", name)
		}
	}
	// Another dtype is refused, naming both.
	_, _, err := npy.Read[float32](bytes.NewReader(good.Bytes()))
	if err == nil || !strings.Contains(err.Error(), "<i4") || !strings.Contains(err.Error(), "<f4") {
		t.Errorf("int32 file read as float32: %v", err)
	}
	got, h, err := npy.Read[int32](bytes.NewReader(good.Bytes()))
	if err != nil || !reflect.DeepEqual(got, []int32{1, 2, 3}) || !reflect.DeepEqual(h.Shape, []int64{3}) {
		t.Errorf("good file: %v %v %v", got, h, err)
	}
	if err := npy.Write(&good, []int32{1, 2, 3}, []int64{2, 2}); err == nil {
		t.Error("3 elements written with shape (2, 2)")
	}
}
