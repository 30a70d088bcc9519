"""ztf2zarr.batches, the training reader: every selected row once per epoch (whole store, splits,
labels, one and several workers), reproducible orders, mixing across chunks, the values
themselves, and the worker division used by the PyTorch wrapper (tested without torch)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import ztf2zarr
from conftest import open_root, run

CHUNK = 16
ALERTS = 400
#: Bytes of one buffered row with no extra column: stamps (3·21·21 float32), row, label_code.
ROW_BYTES = 3 * 21 * 21 * 4 + 8 + 2


@pytest.fixture(scope="session")
def store(binary, tmp_path_factory):
    """400 synthetic labeled alerts in 16-row chunks (25 chunks), split 0.8/0.1/0.1."""
    work = tmp_path_factory.mktemp("reader")
    run(binary, ["generate", "-o", work / "alerts", "--count", ALERTS, "--labels", "labels.csv"], work).check()
    labels = next((work / "alerts").rglob("labels.csv"))
    path = work / "reader.zarr"
    run(binary, ["build", work / "alerts", "-o", path, "--no-progress", "--chunk-rows", CHUNK, "--labels", labels], work).check()
    run(binary, ["split", path, "--seed", "3"], work).check()
    return path


def epoch_rows(batch_list) -> np.ndarray:
    return np.concatenate([b["row"] for b in batch_list])


def assert_full_but_last(batch_list, size):
    lengths = [len(b["row"]) for b in batch_list]
    assert all(n == size for n in lengths[:-1]), lengths
    assert 0 < lengths[-1] <= size, lengths


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_every_row_once_with_its_own_stamps_and_label(store, engine):
    root = open_root(store)
    stamps, catalog = root["stamps"][:], root["catalog"][:]
    got = list(ztf2zarr.batches(store, batch_size=48, seed=1, buffer_mb=0.2, columns=("objectId", "magpsf"), engine=engine))
    rows = epoch_rows(got)
    assert sorted(rows.tolist()) == list(range(ALERTS))
    assert_full_but_last(got, 48)
    for batch in got:
        assert batch["stamps"].dtype == np.float32 and batch["stamps"].shape[1:] == (3, 21, 21)
        np.testing.assert_array_equal(batch["stamps"], stamps[batch["row"]])
        np.testing.assert_array_equal(batch["label_code"], catalog["label_code"][batch["row"]])
        np.testing.assert_array_equal(batch["objectId"], catalog["objectId"][batch["row"]])
        np.testing.assert_array_equal(batch["magpsf"], catalog["magpsf"][batch["row"]])
    assert ztf2zarr.count_rows(store) == ALERTS


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_split_gives_exactly_its_rows(store, split):
    expected = open_root(store)[f"splits/{split}"][:]
    assert len(expected) > 0
    got = list(ztf2zarr.batches(store, batch_size=16, split=split, seed=2, buffer_mb=0.1))
    assert sorted(epoch_rows(got).tolist()) == sorted(expected.tolist())
    assert_full_but_last(got, 16)
    assert ztf2zarr.count_rows(store, split=split) == len(expected)


def test_labels_select_rows_by_name_or_code(store):
    root = open_root(store)
    codes = root["catalog"][:]["label_code"]
    classes = {name: int(code) for code, name in root.attrs["ztf2zarr"]["labels"]["classes"].items()}
    name, code = sorted(classes.items())[0]
    by_name = epoch_rows(ztf2zarr.batches(store, batch_size=20, labels=name))
    by_code = epoch_rows(ztf2zarr.batches(store, batch_size=20, labels=[code]))
    expected = np.nonzero(codes == code)[0].tolist()
    assert 0 < len(expected) < ALERTS
    assert sorted(by_name.tolist()) == expected == sorted(by_code.tolist())
    train = set(root["splits/train"][:].tolist())
    both = epoch_rows(ztf2zarr.batches(store, batch_size=20, split="train", labels=name))
    assert sorted(both.tolist()) == sorted(train & set(expected))
    with pytest.raises(ValueError, match="no label 'nonesuch'"):
        next(ztf2zarr.batches(store, labels="nonesuch"))


@pytest.mark.parametrize("split", [None, "train"])
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_share_the_rows_without_overlap(store, split, workers):
    expected = open_root(store)["splits/train"][:].tolist() if split else list(range(ALERTS))
    seen = []
    for worker in range(workers):
        got = list(ztf2zarr.batches(store, batch_size=24, split=split, seed=5, epoch=1, buffer_mb=0.2,
                                    worker=worker, num_workers=workers))
        assert_full_but_last(got, 24)
        seen.append(epoch_rows(got))
    allrows = np.concatenate(seen)
    assert len(allrows) == len(set(allrows.tolist())), "a row came to two workers"
    assert sorted(allrows.tolist()) == sorted(expected)
    chunks = [set((s // CHUNK).tolist()) for s in seen]
    assert all(not (a & b) for i, a in enumerate(chunks) for b in chunks[i + 1 :]), "a chunk was read by two workers"


def test_an_abandoned_epoch_leaves_nothing_behind_for_the_next(store):
    """The next epoch reuses the last one's memory: rows of an epoch left half-read must not
    reappear, and values must still be the rows' own."""
    stamps = open_root(store)["stamps"][:]
    for prefetch in (0, 2):
        first = ztf2zarr.batches(store, batch_size=40, seed=1, buffer_mb=0.5, prefetch=prefetch)
        next(first)
        first.close()
        got = list(ztf2zarr.batches(store, batch_size=40, seed=1, epoch=3, buffer_mb=0.5, prefetch=prefetch))
        assert sorted(epoch_rows(got).tolist()) == list(range(ALERTS))
        for batch in got:
            np.testing.assert_array_equal(batch["stamps"], stamps[batch["row"]])


def test_worker_chunks_deal_the_epoch_order_round_robin():
    order = ztf2zarr.epoch_chunks(range(10), seed=4, epoch=0)
    assert sorted(order.tolist()) == list(range(10))
    shares = [ztf2zarr.worker_chunks(order, i, 3).tolist() for i in range(3)]
    assert shares == [order[0::3].tolist(), order[1::3].tolist(), order[2::3].tolist()]
    assert sorted(sum(shares, [])) == list(range(10))
    assert ztf2zarr.worker_chunks(order, 0, 1).tolist() == order.tolist()
    with pytest.raises(ValueError):
        ztf2zarr.worker_chunks(order, 3, 3)


def test_same_seed_same_order_other_epoch_or_seed_another(store):
    def order(**kw):
        return epoch_rows(ztf2zarr.batches(store, batch_size=32, buffer_mb=0.2, **kw)).tolist()

    first = order(seed=7, epoch=0)
    assert order(seed=7, epoch=0) == first
    assert order(seed=7, epoch=0, prefetch=0) == first, "prefetch changed the order"
    assert order(seed=7, epoch=1) != first
    assert order(seed=8, epoch=0) != first
    assert sorted(order(seed=7, epoch=1)) == sorted(first)
    epochs = ztf2zarr.epoch_chunks(range(25), 7, 0), ztf2zarr.epoch_chunks(range(25), 7, 1)
    assert epochs[0].tolist() != epochs[1].tolist()


def test_batches_mix_at_least_as_many_chunks_as_the_buffer_holds(store):
    buffer_mb = 4 * CHUNK * ROW_BYTES / 1e6  # four chunks
    capacity = ztf2zarr.buffer_rows(store, buffer_mb, batch_size=32)
    assert capacity == 4 * CHUNK
    held = capacity // CHUNK
    got = list(ztf2zarr.batches(store, batch_size=32, seed=11, buffer_mb=buffer_mb))
    # The batches after the last chunk was read come from a draining buffer: leave them out.
    draining = -(-(capacity + CHUNK) // 32)
    mixed = [len(np.unique(b["row"] // CHUNK)) for b in got[:-draining]]
    assert len(mixed) >= 8
    assert min(mixed) >= held, mixed
    # A buffer of one chunk cannot mix: the same check then fails, so it measures something.
    narrow = list(ztf2zarr.batches(store, batch_size=16, seed=11, buffer_mb=CHUNK * ROW_BYTES / 1e6))
    assert min(len(np.unique(b["row"] // CHUNK)) for b in narrow[:-2]) < 4


def test_bad_arguments_are_refused_with_the_reason(store, tmp_path):
    with pytest.raises(ValueError, match="no catalog column 'nope'"):
        next(ztf2zarr.batches(store, columns=["nope"]))
    with pytest.raises(KeyError, match="no split 'holdout'"):
        next(ztf2zarr.batches(store, split="holdout"))
    with pytest.raises(ValueError, match="batch_size"):
        next(ztf2zarr.batches(store, batch_size=0))
    for engine in ("auto", "direct", "zarr"):
        with pytest.raises(FileNotFoundError, match="missing.zarr: no such store folder"):
            next(ztf2zarr.batches(tmp_path / "missing.zarr", engine=engine))
    with pytest.raises(ValueError, match="engine must be one of"):
        next(ztf2zarr.batches(store, engine="fast"))


def damaged_copy(store, tmp_path, damage):
    """A copy of `store`, damaged by `damage(copy)`."""
    import shutil

    broken = tmp_path / "broken.zarr"
    shutil.copytree(store, broken)
    damage(broken)
    return broken


def read_damaged(store, tmp_path, damage, message, engine="direct", **options):
    """Copy `store`, `damage(copy)` it, and read every batch of the copy with `engine`: it must
    stop with a ValueError matching `message`."""
    broken = damaged_copy(store, tmp_path, damage)
    with pytest.raises(ValueError, match=message):
        for _ in ztf2zarr.batches(broken, batch_size=64, engine=engine, **options):
            pass


def rewrite_chunk(store, array, index, change):
    """Chunk `index` of `array` (a 1-D array of `store`) written anew as a sound chunk holding
    `change(values)`: wrong values that decode like right ones."""
    import json

    import numcodecs

    meta = json.loads((store / array / ".zarray").read_text())
    codecs = [numcodecs.get_codec(f) for f in meta.get("filters") or []] + [numcodecs.get_codec(meta["compressor"])]
    path = store / array / str(index)
    data = path.read_bytes()
    for codec in reversed(codecs):
        data = codec.decode(data)
    values = np.frombuffer(bytes(memoryview(data)), dtype=meta["dtype"]).copy()
    values = change(values)
    assert values.dtype == np.dtype(meta["dtype"]) and values.size == meta["chunks"][0]
    data = values.tobytes()
    for codec in codecs:
        data = codec.encode(data)
    path.write_bytes(bytes(data))


def test_a_chunk_that_fails_to_decode_names_its_file(store, tmp_path):
    read_damaged(store, tmp_path, lambda s: (s / "stamps" / "3.0.0.0").write_bytes(b"not zstd at all"),
                 r"stamps/3\.0\.0\.0: chunk does not decode")


def test_a_short_chunk_is_refused_not_served_from_the_previous_chunks_memory(store, tmp_path):
    # A valid zstd frame of fewer bytes than a chunk: decoded into the reused chunk buffer, the
    # rest of the buffer would still hold the chunk read before it.
    import numcodecs

    short = numcodecs.Zstd(level=1).encode(bytes(100))
    read_damaged(store, tmp_path, lambda s: (s / "catalog" / "3").write_bytes(short),
                 r"catalog/3: chunk decodes to 100 bytes, expected \d+")


@pytest.mark.parametrize("engine", ["direct", "zarr"])
@pytest.mark.parametrize("key", ["catalog/5", "stamps/5.0.0.0"])
def test_a_missing_chunk_is_an_error_naming_it_not_rows_of_fill(store, tmp_path, engine, key):
    # Fill would be candid 0 and label_code 0, a real class, beside real stamps.
    array = key.split("/")[0]
    read_damaged(store, tmp_path, lambda s: (s / key).unlink(), rf"{key}: chunk 5 of `{array}` is missing", engine=engine)


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_a_missing_light_curve_chunk_is_an_error_naming_it(store, tmp_path, engine):
    broken = damaged_copy(store, tmp_path, lambda s: (s / "lightcurves/epochs/jd/0").unlink())
    row = int(np.argmax(open_root(store)["lightcurves/alerts/history_count"][:] > 0))
    with pytest.raises(ValueError, match=r"lightcurves/epochs/jd/0: chunk 0 of `lightcurves/epochs/jd` is missing"):
        ztf2zarr.LightCurves(broken, engine=engine).history(row, columns=["jd"])


def test_the_zarr_engine_lists_each_arrays_chunks_once(store, monkeypatch):
    from ztf2zarr import _store

    listed = []
    real = _store._LocalFiles.entries
    monkeypatch.setattr(_store._LocalFiles, "entries", lambda self, prefix: listed.append(prefix) or real(self, prefix))
    rows = epoch_rows(ztf2zarr.batches(store, batch_size=64, engine="zarr", split="train"))
    assert len(rows) > 0
    assert sorted(listed) == ["catalog", "splits/train", "stamps"]


@pytest.mark.parametrize("engine", ["direct", "zarr"])
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda rows: np.where(rows == rows.max(), ALERTS, rows), rf"row {ALERTS} is not a catalog row \(the catalog has {ALERTS} rows\)"),
        (lambda rows: np.where(np.arange(len(rows)) == 3, rows[2], rows), r"row \d+ is listed twice"),
    ],
    ids=["out-of-range", "repeated"],
)
def test_a_damaged_split_is_an_error_naming_it(store, tmp_path, engine, change, message):
    read_damaged(store, tmp_path, lambda s: rewrite_chunk(s, "splits/train", 0, change),
                 rf"splits/train is damaged: {message}", engine=engine, split="train")


def set_value(store, array, row, value):
    """Row `row` of the 1-D `array` of `store` set to `value`, in a chunk that decodes soundly."""
    import json

    chunk_rows = json.loads((store / array / ".zarray").read_text())["chunks"][0]
    at = row % chunk_rows
    rewrite_chunk(store, array, row // chunk_rows, lambda v: np.where(np.arange(len(v)) == at, value, v).astype(v.dtype))


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_a_history_pointer_past_the_end_is_an_error_naming_it(store, tmp_path, engine):
    # Read, it would give a history cut short, or padding or another alert's rows as its own.
    root = open_root(store)
    starts = root["lightcurves/alerts/history_start"][:]
    length = root["lightcurves/history_epochs"].shape[0]
    row = int(np.argmax(starts))
    count = length - int(starts[row]) + 1
    broken = damaged_copy(store, tmp_path, lambda s: set_value(s, "lightcurves/alerts/history_count", row, count))
    message = (rf"lightcurves/alerts is damaged: row {row} has history_start {starts[row]} and history_count {count}, "
               rf"rows outside lightcurves/history_epochs \({length} rows\)")
    with pytest.raises(ValueError, match=message):
        ztf2zarr.LightCurves(broken, engine=engine).history(row)
    with pytest.raises(ValueError, match=message):
        for _ in ztf2zarr.batches(broken, batch_size=64, engine=engine, history=True):
            pass


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_a_history_row_outside_its_table_is_an_error_naming_it(store, tmp_path, engine):
    root = open_root(store)
    epochs = root["lightcurves/epochs/jd"].shape[0]
    row = int(np.argmax(root["lightcurves/alerts/history_count"][:] > 0))
    start = int(root["lightcurves/alerts/history_start"][row])
    broken = damaged_copy(store, tmp_path, lambda s: set_value(s, "lightcurves/history_epochs", start, epochs))
    with pytest.raises(ValueError, match=rf"lightcurves/history_epochs is damaged: row {row}'s history holds {epochs}, "
                                         rf"not a row of lightcurves/epochs \({epochs} rows\)"):
        ztf2zarr.LightCurves(broken, engine=engine).history(row)


def _epochs_range(root) -> tuple[int, int, int]:
    """An object index row whose range is of epochs, with its start and count."""
    tables = np.array([str(t) for t in root["lightcurves/objects/table"][:]])
    at = int(np.argmax(tables == "epochs"))
    return at, int(root["lightcurves/objects/start"][at]), int(root["lightcurves/objects/count"][at])


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_an_object_range_past_the_end_of_its_table_is_an_error_naming_it(store, tmp_path, engine):
    # Read, it would serve rows that are not there, or padding, as the object's curve.
    root = open_root(store)
    epochs = root["lightcurves/epochs/jd"].shape[0]
    at, _, count = _epochs_range(root)
    broken = damaged_copy(store, tmp_path, lambda s: set_value(s, "lightcurves/objects/start", at, epochs))
    lc = ztf2zarr.LightCurves(broken, engine=engine)
    with pytest.raises(ValueError, match=rf"lightcurves/objects is damaged: object .* has epochs rows {epochs}\+{count}, "
                                         rf"past the end of lightcurves/epochs \({epochs} rows\)"):
        lc.objects


@pytest.mark.parametrize("engine", ["direct", "zarr"])
def test_an_object_index_that_covers_another_number_of_rows_is_an_error_naming_it(store, tmp_path, engine):
    # Every row is in exactly one range: a range cut short leaves rows of no object (as verify says).
    root = open_root(store)
    epochs = root["lightcurves/epochs/jd"].shape[0]
    at, _, count = _epochs_range(root)
    broken = damaged_copy(store, tmp_path, lambda s: set_value(s, "lightcurves/objects/count", at, count - 1))
    with pytest.raises(ValueError, match=rf"lightcurves/objects is damaged: its ranges cover {epochs - 1} rows of "
                                         rf"lightcurves/epochs, which has {epochs}"):
        ztf2zarr.LightCurves(broken, engine=engine).curve("ZTF18aaaaaaa")


def test_torch_wrapper_divides_chunks_among_dataloader_workers(store, monkeypatch):
    """TorchBatches with a stand-in for torch (CI does not install it): each DataLoader worker
    reads its own chunks, and all of them together every row once."""
    current = {"info": None}
    data = types.ModuleType("torch.utils.data")
    data.IterableDataset = object
    data.get_worker_info = lambda: current["info"]
    fake = types.ModuleType("torch")
    fake.from_numpy = lambda a: ("tensor", a)
    fake.utils = types.ModuleType("torch.utils")
    fake.utils.data = data
    for name, module in {"torch": fake, "torch.utils": fake.utils, "torch.utils.data": data}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "ztf2zarr.torchdata", raising=False)

    dataset = ztf2zarr.TorchBatches(store, batch_size=32, seed=3, columns=("objectId",), buffer_mb=0.2)
    dataset.set_epoch(2)
    rows = []
    for worker in range(2):
        current["info"] = types.SimpleNamespace(id=worker, num_workers=2)
        for batch in dataset:
            assert batch["stamps"][0] == "tensor" and batch["row"][0] == "tensor"
            assert batch["objectId"].dtype.kind == "U"  # strings stay numpy
            rows.append(batch["row"][1])
    rows = np.concatenate(rows)
    assert sorted(rows.tolist()) == list(range(ALERTS))
    from ztf2zarr.torchdata import reader_slot

    assert [reader_slot(w, 2, rank=r, world_size=2) for r in range(2) for w in range(2)] == [(0, 4), (1, 4), (2, 4), (3, 4)]


def test_import_does_not_import_torch():
    import subprocess

    code = "import sys, ztf2zarr; list(ztf2zarr.epoch_chunks(range(3), 0, 0)); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_torch_batches_without_torch_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    monkeypatch.delitem(sys.modules, "ztf2zarr.torchdata", raising=False)
    with pytest.raises(ImportError, match=r'TorchBatches needs PyTorch: pip install "\.\[torch\]"'):
        ztf2zarr.TorchBatches
