"""Optional packages: tqdm progress bars, torch interop; GPU-only checks."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcast as tc

pytestmark = pytest.mark.usefixtures("client")


def test_progress_bars(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm", reason="tqdm is not installed: no progress bars to check")
    a = np.arange(3 << 20, dtype=np.uint8)
    t = tc.from_numpy(a, progress=True)
    np.testing.assert_array_equal(t.numpy(progress=True), a)
    err = capsys.readouterr().err
    assert "put" in err and "fetch" in err


def test_progress_without_tqdm_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    with pytest.warns(UserWarning, match="tqdm"):
        t = tc.from_numpy(np.ones(10), progress=True)
    np.testing.assert_array_equal(t.numpy(), np.ones(10))


def test_torch_round_trip() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed: tc.from_torch and "
                                "RemoteTensor.torch() are not checked")
    for dt in (torch.float32, torch.bfloat16, torch.int64, torch.bool, torch.complex64):
        x = (torch.arange(12).reshape(3, 4) % 3).to(dt)
        t = tc.from_torch(x)
        assert t.dtype is tc.as_dtype(dt)
        assert torch.equal(t.torch(), x)
        assert torch.equal(tc.tensor(x).torch(), x)
    g = torch.ones(3, requires_grad=True)
    t = tc.from_torch(g)
    assert t.requires_grad and t.torch().requires_grad
    with pytest.raises(RuntimeError):
        t.numpy()
    assert tc.as_dtype(torch.float16) is tc.float16


def test_gpu_round_trip(cuda: bool) -> None:
    if not cuda:
        pytest.skip("needs a server with a GPU (this one serves cpu only)")
    a = np.random.default_rng(0).standard_normal((256, 257)).astype(np.float32)
    g = tc.from_numpy(a, device="cuda")
    assert g.device == "cuda:0" and g.is_cuda
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        g.numpy()
    np.testing.assert_array_equal(g.cpu().numpy(), a)
    np.testing.assert_array_equal(g.numpy(force=True), a)
    np.testing.assert_array_equal(g.half().cpu().numpy(), a.astype(np.float16))
    np.testing.assert_array_equal(g.to("cpu").to("cuda:0").cpu().numpy(), a)
    assert "cuda:0" in tc.stats()
