"""engine.data: sources, zip intake, verify, split, transforms and loaders. All data made here."""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import tarfile
import threading
import warnings
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import data
from engine.data import DataConfig, DataError


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    """Every test gets its own app data directory (quarantine, default folders)."""
    monkeypatch.setenv("DLLAB_DATA", str(tmp_path / "appdata"))


def _png(colour=(10, 200, 30), size=(12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), colour, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(colour=(10, 200, 30), size=(40, 30)) -> bytes:
    rng = np.random.default_rng(0)
    arr = np.clip(np.full((size[1], size[0], 3), colour) + rng.integers(-20, 20, (size[1], size[0], 3)),
                  0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _make_classes(root: Path, counts: dict[str, int]) -> Path:
    for k, (cls, n) in enumerate(sorted(counts.items())):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / cls / f"img{i:03d}.png").write_bytes(_png((20 * k % 255, 7 * i % 255, 100)))
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --------------------------------------------------------------------------------------------
# Zip intake


@pytest.fixture
def zip_env(tmp_path):
    """An upload folder, and a data-set folder that already holds a previous data set."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    sets = tmp_path / "sets"
    dest = sets / "bears"
    (dest / "grizzly").mkdir(parents=True)
    (dest / "grizzly" / "old.png").write_bytes(_png())
    return uploads, sets, dest


def _zip(path: Path, entries: list[tuple[str, bytes]] | list, *, compression=zipfile.ZIP_DEFLATED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # duplicate names are written on purpose
        with zipfile.ZipFile(path, "w", compression) as zf:
            for entry in entries:
                if isinstance(entry, zipfile.ZipInfo):
                    zf.writestr(entry, b"/etc/passwd")
                else:
                    name, body = entry
                    zf.writestr(zipfile.ZipInfo(name), body, compress_type=compression)
    return path


def _assert_rejected(src: Path, dest: Path, sets: Path, tmp_path: Path, match: str, **caps):
    before_dest = _tree(dest)
    before_all = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match=match):
        data.extract_zip(src, dest, **caps)
    assert _tree(dest) == before_dest                             # previous data set intact
    assert sorted(p.name for p in sets.iterdir()) == ["bears"]    # no temporary folder left
    after_all = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert after_all == before_all                                # nothing written anywhere


@pytest.mark.parametrize("name, match", [
    ("../x.png", r"'\.\.'"),
    ("/abs.png", "absolute"),
    ("C:\\x.png", "backslash|drive"),
    ("C:x.png", "drive"),
    ("a/../../x.png", r"'\.\.'"),
    ("teddy\\..\\..\\x.png", "backslash"),
])
def test_zip_with_an_unsafe_path_is_refused(zip_env, tmp_path, name, match):
    uploads, sets, dest = zip_env
    src = _zip(uploads / "bad.zip", [("teddy/ok.png", _png()), (name, _png())])
    _assert_rejected(src, dest, sets, tmp_path, match)
    assert not (tmp_path / "x.png").exists() and not Path("/abs.png").exists()


def test_zip_with_a_symlink_is_refused(zip_env, tmp_path):
    uploads, sets, dest = zip_env
    link = zipfile.ZipInfo("teddy/shortcut.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    src = _zip(uploads / "link.zip", [("teddy/ok.png", _png()), link])
    _assert_rejected(src, dest, sets, tmp_path, "is a link")


def test_zip_bomb_is_refused(zip_env, tmp_path):
    uploads, sets, dest = zip_env
    src = _zip(uploads / "bomb.zip", [("teddy/big.png", b"\0" * 3_000_000)])
    assert src.stat().st_size < 20_000    # a small file...
    _assert_rejected(src, dest, sets, tmp_path, "limit", max_bytes=1_000_000)


def test_zip_bomb_with_lying_headers_is_refused(zip_env, tmp_path):
    """The headers claim 100 bytes; the data expands to 3 MB. What is read is what counts."""
    uploads, sets, dest = zip_env
    src = _zip(uploads / "liar.zip", [("teddy/big.png", b"\0" * 3_000_000)])
    raw = bytearray(src.read_bytes())
    true_size = struct.pack("<I", 3_000_000)
    # Uncompressed-size fields sit at offset 22 of the local header and 24 of the central one.
    local = raw.find(b"PK\x03\x04")
    central = raw.find(b"PK\x01\x02")
    assert raw[local + 22:local + 26] == true_size and raw[central + 24:central + 28] == true_size
    raw[local + 22:local + 26] = struct.pack("<I", 100)
    raw[central + 24:central + 28] = struct.pack("<I", 100)
    src.write_bytes(bytes(raw))
    assert zipfile.ZipFile(src).infolist()[0].file_size == 100
    _assert_rejected(src, dest, sets, tmp_path, "damaged|limit", max_bytes=1_000_000)


def test_stream_counting_stops_at_the_cap_whatever_the_headers_say(zip_env, tmp_path, monkeypatch):
    """Even if the declared sizes were believed, the bytes actually unpacked are counted."""
    uploads, sets, dest = zip_env
    src = _zip(uploads / "two.zip", [("teddy/a.png", b"\1" * 600_000), ("teddy/b.png", b"\2" * 600_000)])
    monkeypatch.setattr(data.safezip, "_declared_size", lambda info: 1)
    _assert_rejected(src, dest, sets, tmp_path, "more than", max_bytes=1_000_000)


def test_zip_with_too_many_entries_is_refused(zip_env, tmp_path):
    uploads, sets, dest = zip_env
    src = _zip(uploads / "many.zip", [(f"teddy/{i}.png", _png()) for i in range(6)])
    _assert_rejected(src, dest, sets, tmp_path, "over the limit", max_files=5)


@pytest.mark.parametrize("names", [["teddy/a.png", "teddy/a.png"], ["teddy/a.png", "Teddy/A.png"],
                                   ["teddy/a.png", "teddy/a.png/b.png"]])
def test_zip_with_duplicate_names_is_refused(zip_env, tmp_path, names):
    uploads, sets, dest = zip_env
    src = _zip(uploads / "dup.zip", [(n, _png()) for n in names])
    _assert_rejected(src, dest, sets, tmp_path, "more than once")


def test_zip_with_overlapping_entries_is_refused(zip_env, tmp_path):
    """Two directory records pointing at the same bytes: the overlapping-entry bomb trick."""
    uploads, sets, dest = zip_env
    src = _zip(uploads / "one.zip", [("teddy/a.png", b"\0" * 50_000)])
    raw = src.read_bytes()
    cd = raw.find(b"PK\x01\x02")
    eocd = raw.find(b"PK\x05\x06")
    record = raw[cd:eocd]
    twin = bytearray(record)
    twin[46:46 + len("teddy/a.png")] = b"teddy/b.png"      # same length, same data offset
    cd_size = 2 * len(record)
    end = bytearray(raw[eocd:])
    end[8:10] = struct.pack("<H", 2)
    end[10:12] = struct.pack("<H", 2)
    end[12:16] = struct.pack("<I", cd_size)
    src.write_bytes(raw[:cd] + record + bytes(twin) + bytes(end))
    assert len(zipfile.ZipFile(src).infolist()) == 2
    _assert_rejected(src, dest, sets, tmp_path, "overlap")


def test_not_a_zip_is_refused(zip_env, tmp_path):
    uploads, sets, dest = zip_env
    src = uploads / "fake.zip"
    src.write_bytes(b"<html>not a zip</html>")
    _assert_rejected(src, dest, sets, tmp_path, "not a zip")


def test_good_zip_replaces_the_data_set(zip_env, tmp_path):
    uploads, sets, dest = zip_env
    src = _zip(uploads / "bears.zip", [
        ("bears/", b""), ("bears/teddy/1.png", _png()), ("bears/teddy/2.png", _png((1, 2, 3))),
        ("bears/black/1.png", _png((9, 9, 9))), ("__MACOSX/bears/._1.png", b"junk"),
        ("bears/.DS_Store", b"junk")])
    out = data.extract_zip(src, dest)
    assert out == dest
    assert sorted(_tree(dest)) == ["black/1.png", "teddy/1.png", "teddy/2.png"]  # wrapper dropped
    assert sorted(p.name for p in sets.iterdir()) == ["bears"]
    items = data.load_items(dest)
    assert items.classes == ["black", "teddy"]
    # An upload arrives as a file object (Streamlit's UploadedFile); the old set is replaced whole.
    again = _zip(uploads / "two.zip", [("grizzly/1.png", _png()), ("black/9.png", _png())])
    data.extract_zip(io.BytesIO(again.read_bytes()), dest)
    assert sorted(_tree(dest)) == ["black/9.png", "grizzly/1.png"]
    assert sorted(p.name for p in sets.iterdir()) == ["bears"]


def test_a_file_where_the_data_set_goes_is_refused_in_a_sentence(zip_env, tmp_path):
    uploads, sets, _ = zip_env
    src = _zip(uploads / "bears.zip", [("teddy/1.png", _png()), ("black/1.png", _png())])
    in_the_way = sets / "notes"
    in_the_way.write_text("a file")
    with pytest.raises(DataError, match="exists and is a file, not a folder"):
        data.extract_zip(src, in_the_way)
    assert in_the_way.read_text() == "a file"
    assert sorted(p.name for p in sets.iterdir()) == ["bears", "notes"]   # no temporary folder


# --------------------------------------------------------------------------------------------
# verify_images


def test_verify_images_reports_and_quarantines_bad_files(tmp_path):
    folder = tmp_path / "pets" / "cat"
    folder.mkdir(parents=True)
    good = _jpeg(size=(200, 150))
    (folder / "good.jpg").write_bytes(good)
    (folder / "good.png").write_bytes(_png())
    (folder / "truncated.jpg").write_bytes(good[: len(good) * 6 // 10])
    (folder / "fake.jpg").write_bytes(b"<!DOCTYPE html><html><body>404</body></html>")
    (folder / "notes.txt").write_text("not an image and not listed")
    root = tmp_path / "pets"

    bad = data.verify_images(root)
    assert [p.name for p, _ in bad] == ["fake.jpg", "truncated.jpg"]
    reasons = dict((p.name, r) for p, r in bad)
    assert "HTML" in reasons["fake.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert (folder / "fake.jpg").exists()                     # without delete nothing moves

    quarantine = tmp_path / "q"
    bad2 = data.verify_images(root, delete=True, quarantine=quarantine)
    assert [p for p, _ in bad2] == [p for p, _ in bad]
    assert sorted(p.name for p in folder.iterdir()) == ["good.jpg", "good.png", "notes.txt"]
    assert (quarantine / "cat" / "truncated.jpg").read_bytes() == good[: len(good) * 6 // 10]
    assert (quarantine / "cat" / "fake.jpg").read_bytes().startswith(b"<!DOCTYPE")
    assert data.verify_images(root) == []


def test_verify_images_default_quarantine_is_under_the_data_dir(tmp_path):
    root = tmp_path / "set"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"fake")
    data.verify_images(root, delete=True)
    moved = list((tmp_path / "appdata" / "quarantine").rglob("x.png"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"fake"
    assert moved[0].parent.name == "a"


# --------------------------------------------------------------------------------------------
# Split and listing


def test_plain_class_folders_split_is_seeded_and_stable(tmp_path):
    root = _make_classes(tmp_path / "set", {"b_dog": 20, "a_cat": 30, "c_cow": 10})
    (root / "a_cat" / "readme.txt").write_text("ignored")
    items = data.load_items(root)
    assert items.classes == ["a_cat", "b_dog", "c_cow"]
    assert not items.has_valid_folder
    n_valid = {c: sum(1 for _, y in items.valid if y == i) for i, c in enumerate(items.classes)}
    assert n_valid == {"a_cat": 6, "b_dog": 4, "c_cow": 2}          # 20 % of each class
    assert len(items.train) + len(items.valid) == 60
    assert not {p for p, _ in items.train} & {p for p, _ in items.valid}
    assert items.valid == sorted(items.valid, key=lambda t: t[0].relative_to(root).as_posix())
    for path, label in items.train + items.valid:
        assert path.parent.name == items.classes[label]

    # Same files, another listing order and another place on disk: the same split.
    copy = tmp_path / "copy"
    os.rename(root, copy)
    again = data.load_items(copy)
    rel = lambda lst, r: [(p.relative_to(r).as_posix(), y) for p, y in lst]  # noqa: E731
    assert rel(again.valid, copy) == rel(items.valid, root)
    real_walk = os.walk
    backwards = lambda *a, **k: [(d, sub[::-1], files[::-1])  # noqa: E731
                                 for d, sub, files in reversed(list(real_walk(*a, **k)))]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "walk", backwards)
        assert rel(data.load_items(copy).valid, copy) == rel(items.valid, root)
    other = data.load_items(copy, seed=7)
    assert rel(other.valid, copy) != rel(items.valid, root)

    # Removing a training file (cleaning) moves nothing else between train and valid.
    gone = again.train[0][0]
    gone.unlink()
    after = data.load_items(copy)
    assert {p for p, _ in after.valid} == {p for p, _ in again.valid}


def test_train_valid_folders_are_used_as_given(tmp_path):
    root = tmp_path / "set"
    _make_classes(root / "train", {"cat": 5, "dog": 4})
    _make_classes(root / "valid", {"cat": 2, "dog": 1, "emu": 1})
    items = data.load_items(root, valid_pct=0.5)
    assert items.has_valid_folder
    assert items.classes == ["cat", "dog", "emu"]
    assert len(items.train) == 9 and len(items.valid) == 4
    assert all(p.parts[-3] == "train" for p, _ in items.train)
    assert all(p.parts[-3] == "valid" for p, _ in items.valid)
    assert [items.classes[y] for _, y in items.valid] == ["cat", "cat", "dog", "emu"]


@pytest.mark.parametrize("counts, match", [({"only": 3}, "two class folders"), ({}, "two class")])
def test_too_few_classes(tmp_path, counts, match):
    root = _make_classes(tmp_path / "set", counts)
    root.mkdir(exist_ok=True)
    with pytest.raises(DataError, match=match):
        data.load_items(root)


# --------------------------------------------------------------------------------------------
# Digits


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """Written once per module: 1,797 files cost seconds on a slow disk."""
    parent = tmp_path_factory.mktemp("digits")
    return data.digits_folder(parent / "digits")


def test_digits_folder_writes_1797_pngs_in_10_folders_once(digits_dir):
    dest = digits_dir
    folders = sorted(p.name for p in dest.iterdir())
    assert folders == [str(d) for d in range(10)]
    files = sorted(dest.rglob("*.png"))
    assert len(files) == 1797
    assert [len(list((dest / str(d)).iterdir())) for d in range(10)] == \
        [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    img = data.load_image(files[0])
    assert img.shape == (8, 8, 3) and img.max() > 200 and img.min() == 0
    assert sorted(p.name for p in dest.parent.iterdir()) == ["digits"]   # no temporary folder

    # A second call is instant and rewrites nothing; a cleaned data set stays as the user left it.
    body = files[0].read_bytes()
    files[0].unlink()
    try:
        mtime = files[1].stat().st_mtime_ns
        assert data.digits_folder(dest) == dest
        assert len(list(dest.rglob("*.png"))) == 1796
        assert files[1].stat().st_mtime_ns == mtime
    finally:
        files[0].write_bytes(body)


def test_digits_crash_leaves_no_half_set(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_write = Path.write_bytes

    def failing_write(self, body):
        calls["n"] += 1
        if calls["n"] == 50:
            raise OSError("disk full")
        return real_write(self, body)
    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OSError):
        data.digits_folder(tmp_path / "digits")
    assert calls["n"] == 50
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Oxford-IIIT Pet (a tiny fake copy in the same layout; never the network)

PET_IDS = {  # image id -> (class id, species 1 cat / 2 dog)
    "Abyssinian_1": (1, 1), "Abyssinian_2": (1, 1), "Abyssinian_3": (1, 1),
    "american_bulldog_1": (2, 2), "american_bulldog_2": (2, 2), "american_bulldog_3": (2, 2),
    "beagle_1": (5, 2), "beagle_2": (5, 2),
    "Bengal_1": (6, 1), "Bengal_2": (6, 1),
}
PET_TEST = {"Abyssinian_3", "american_bulldog_3", "beagle_2", "Bengal_2"}


def _fake_pets(base: Path) -> Path:
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    for k, image_id in enumerate(PET_IDS):
        (base / "images" / f"{image_id}.jpg").write_bytes(_jpeg((20 * k, 100, 200)))
    for split, ids in (("trainval", [i for i in PET_IDS if i not in PET_TEST]),
                       ("test", [i for i in PET_IDS if i in PET_TEST])):
        lines = [f"{i} {PET_IDS[i][0]} {PET_IDS[i][1]} 1" for i in ids]
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return base


def test_pets_loader_on_a_fake_copy_breeds(tmp_path):
    root = tmp_path / "downloads"
    _fake_pets(root / "oxford-iiit-pet")
    dest = data.pets_folder(tmp_path / "pets", root=root, download=False)
    tree = _tree(dest)
    assert sorted({k.split("/")[0] for k in tree}) == ["Abyssinian", "American Bulldog", "Beagle",
                                                      "Bengal"]
    assert len(tree) == len(PET_IDS)
    src = root / "oxford-iiit-pet" / "images" / "beagle_1.jpg"
    assert (dest / "Beagle" / "beagle_1.jpg").read_bytes() == src.read_bytes()
    assert (dest / "Beagle" / "beagle_1.jpg").stat().st_ino == src.stat().st_ino   # linked, not copied
    items = data.load_items(dest)
    assert items.classes == ["Abyssinian", "American Bulldog", "Beagle", "Bengal"]
    # Idempotent: a second call returns the folder as it is.
    assert data.pets_folder(tmp_path / "pets", root=root, download=False) == dest


def test_pets_loader_species_and_official_split(tmp_path):
    root = tmp_path / "downloads"
    _fake_pets(root / "oxford-iiit-pet")
    dest = data.pets_folder(tmp_path / "cats-dogs", labels="species", root=root, download=False,
                            official_split=True)
    items = data.load_items(dest)
    assert items.has_valid_folder and items.classes == ["Cat", "Dog"]
    assert sorted(p.stem for p, _ in items.valid) == sorted(PET_TEST)
    for path, label in items.train + items.valid:
        assert (items.classes[label] == "Cat") == (PET_IDS[path.stem][1] == 1)


def test_pets_without_a_copy_and_no_download(tmp_path):
    with pytest.raises(DataError, match="no copy of Oxford-IIIT Pet"):
        data.pets_folder(tmp_path / "pets", root=tmp_path / "empty", download=False)
    with pytest.raises(DataError, match="Unknown pet labels"):
        data.pets_folder(tmp_path / "pets", labels="birds")
    assert "MB" in data.pets_download_size() and data.PETS_DOWNLOAD_BYTES > 700e6


def test_pets_download_reports_progress(tmp_path, monkeypatch):
    """The download path, served by a local HTTP server with archives in the real layout."""
    site = tmp_path / "site"
    site.mkdir()
    fake = _fake_pets(tmp_path / "build" / "oxford-iiit-pet")
    resources = []
    for name, folder in (("images.tar.gz", "images"), ("annotations.tar.gz", "annotations")):
        with tarfile.open(site / name, "w:gz") as tar:
            tar.add(fake / folder, arcname=folder)
        resources.append((name, hashlib.md5((site / name).read_bytes()).hexdigest()))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=site))
    httpd.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
        monkeypatch.setattr(data.sources, "_pets_resources",
                            lambda: [(f"{base_url}/{n}", md5) for n, md5 in resources])
        seen: list[tuple[float, str]] = []
        dest = data.pets_folder(tmp_path / "pets", root=tmp_path / "dl",
                                progress=lambda f, m: seen.append((f, m)))
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert len(list(dest.rglob("*.jpg"))) == len(PET_IDS)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(m.startswith("Downloading images.tar.gz") for _, m in seen)
    assert not list((tmp_path / "dl" / "oxford-iiit-pet").glob("*.tar.gz"))   # archives removed


# --------------------------------------------------------------------------------------------
# Loaders, transforms, show_batch


@pytest.fixture
def small_set(tmp_path):
    root = tmp_path / "set"
    for k, cls in enumerate(["red", "blue"]):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            colour = (220, 20, 20) if cls == "red" else (20, 20, 220)
            (root / cls / f"{i:02d}.jpg").write_bytes(_jpeg(colour, size=(30 + i, 20 + k)))
    (root / "red" / "broken.jpg").write_bytes(b"not really a jpeg")
    return root


def test_dataloaders_shapes_dtypes_normalisation_and_valid_order(small_set):
    cfg = DataConfig(size=24, bs=4, augment=False)
    dls = data.build_dataloaders(small_set, cfg)
    assert dls.classes == ["blue", "red"] and dls.size == 24
    assert [p.name for p, _ in dls.skipped] == ["broken.jpg"]
    assert len(dls.train_items) + len(dls.valid_items) == 20
    items = data.load_items(small_set)          # the split is made first, bad files dropped after
    assert dls.valid_items == [it for it in items.valid if it[0].name != "broken.jpg"]
    assert dls.train_items == [it for it in items.train if it[0].name != "broken.jpg"]
    x, y = next(iter(dls.train))
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.float32
    assert y.shape == (4,) and y.dtype == torch.int64
    # Valid batches follow valid_items exactly, and normalisation is (pixel/255 - mean) / std.
    xs, ys = zip(*list(dls.valid))
    xv, yv = torch.cat(xs), torch.cat(ys)
    assert yv.tolist() == [label for _, label in dls.valid_items]
    for i, (path, _) in enumerate(dls.valid_items):
        want = data.resize_crop(data.load_image(path), 24)                 # (24, 24, 3) uint8
        want = torch.from_numpy(want).permute(2, 0, 1).float() / 255
        mean = torch.tensor(data.IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(data.IMAGENET_STD).view(3, 1, 1)
        torch.testing.assert_close(xv[i], (want - mean) / std)
    red = dls.classes.index("red")
    assert all((xv[i, 0].mean() > xv[i, 2].mean()) == (yv[i] == red) for i in range(len(yv)))
    # Two passes over valid give the same batches; train is reshuffled.
    assert torch.equal(torch.cat([b for b, _ in dls.valid]), xv)


def test_train_augmentation_varies_per_image_and_is_off_for_valid(small_set):
    cfg = DataConfig(size=24, bs=8, max_rotate=30, max_zoom=1.5)
    dls = data.build_dataloaders(small_set, cfg)
    ds = dls.train.dataset
    one = ds.images[:1].repeat(8, 1, 1, 1)                                  # the same image 8 times
    torch.manual_seed(0)
    out = dls.train.collate_fn([(img, torch.tensor(0)) for img in one])[0]
    assert out.shape == (8, 3, 24, 24)
    assert len({round(float(v), 4) for v in out.flatten(1).sum(1)}) == 8   # each image differs
    plain = DataConfig(size=24, bs=8, augment=False)
    still = data.build_dataloaders(small_set, plain).train.collate_fn([(img, torch.tensor(0))
                                                                       for img in one])[0]
    assert torch.allclose(still, still[:1].expand_as(still))


def test_batch_augment_identity_when_ranges_are_zero():
    aug = data.BatchAugment(flip=False, max_rotate=0, max_zoom=1.0, max_lighting=0.0)
    x = torch.rand(5, 3, 16, 16)
    torch.testing.assert_close(aug(x), x, atol=1e-5, rtol=0)


def test_digits_loader_upscales(digits_dir):
    dls = data.build_dataloaders(digits_dir, DataConfig(size=32, bs=64))
    assert len(dls.train_items) + len(dls.valid_items) == 1797
    assert len(dls.valid_items) == pytest.approx(359, abs=5)
    x, y = next(iter(dls.train))
    assert x.shape == (64, 3, 32, 32) and int(y.max()) <= 9
    assert len(dls.train) == len(dls.train_items) // 64   # last partial batch dropped


def test_show_batch_returns_a_grid_and_leaves_the_rng_alone(small_set):
    dls = data.build_dataloaders(small_set, DataConfig(size=24, bs=4))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    grid = data.show_batch(dls, n=6, ncols=3, tile=40)
    assert torch.equal(torch.rand(1), before)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[1] == 3 * 44 + 4 and grid.shape[0] == 2 * (40 + 16 + 4) + 4
    valid = data.show_batch(dls, split="valid", n=2, ncols=2, tile=40)
    # Un-normalised: the first valid tile is the original colour, not a normalised one.
    first = data.load_image(dls.valid_items[0][0])
    assert np.abs(valid[10:30, 10:30].mean((0, 1)) - first.mean((0, 1))).max() < 12
    with pytest.raises(DataError):
        data.show_batch(dls, split="test")


def test_config_is_checked():
    with pytest.raises(DataError, match="size"):
        DataConfig(size=2)
    with pytest.raises(DataError, match="validation share"):
        DataConfig(valid_pct=1.0)
    assert DataConfig().seed == 42 and DataConfig().mean == data.IMAGENET_MEAN


def test_worker_processes_give_the_same_valid_batches(small_set):
    """The path CUDA machines take: collation (and augmentation) inside worker processes."""
    base = data.build_dataloaders(small_set, DataConfig(size=24, bs=4, num_workers=0))
    multi = data.build_dataloaders(small_set, DataConfig(size=24, bs=4, num_workers=1))
    assert multi.valid.num_workers == 1 and base.valid.num_workers == 0
    a = torch.cat([x for x, _ in base.valid])
    b = torch.cat([x for x, _ in multi.valid])
    torch.testing.assert_close(a, b)
    x, y = next(iter(multi.train))
    assert x.shape == (4, 3, 24, 24) and y.dtype == torch.int64


# --------------------------------------------------------------------------------------------
# Issue 18, defect 3: zip entry names the filesystem refuses are a DataError, the old set kept


@pytest.mark.parametrize("name, match", [
    ("teddy/" + "a" * 252 + ".png", "longer than 255 bytes"),              # one 256-byte file name
    ("teddy/" + "ü" * 126 + ".png", "longer than 255 bytes"),              # 130 characters, 256 bytes
    ("b" * 300 + "/x.png", "longer than 255 bytes"),                       # a folder name
    ("/".join(["d" * 200] * 6) + "/x.png", "path longer than 1024 bytes"),
    ("/".join(["d" * 250] * 17) + "/x.png", "path longer than 1024 bytes"),   # over PATH_MAX too
])
def test_zip_entry_names_the_filesystem_refuses_are_a_sentence(zip_env, tmp_path, name, match):
    uploads, sets, dest = zip_env
    src = _zip(uploads / "long.zip", [("teddy/ok.png", _png()), (name, _png())])
    _assert_rejected(src, dest, sets, tmp_path, match)


def test_a_255_byte_name_is_still_extracted(zip_env):
    uploads, _, dest = zip_env
    name = "ü" * 125 + ".png"                                                  # 254 bytes
    src = _zip(uploads / "ok.zip", [("teddy/" + name, _png()), ("grizzly/b.png", _png())])
    data.extract_zip(src, dest)
    assert (dest / "teddy" / name).is_file()


@pytest.mark.parametrize("code, words", [(28, "disk is full"), (36, "name is longer"),
                                         (84, "characters"), (13, "Permission denied")])
def test_a_filesystem_error_while_writing_is_a_sentence(zip_env, tmp_path, monkeypatch, code, words):
    """Whatever else the filesystem refuses while writing (ENOSPC, ENAMETOOLONG, EILSEQ, EACCES)
    becomes a DataError too, and the previous set stays."""
    import builtins
    from engine.data import safezip

    def refusing_open(path, mode="r", *args, **kwargs):
        if "x" in mode:
            raise OSError(code, os.strerror(code), str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(safezip, "open", refusing_open, raising=False)
    uploads, sets, dest = zip_env
    src = _zip(uploads / "fine.zip", [("teddy/a.png", _png()), ("grizzly/b.png", _png())])
    _assert_rejected(src, dest, sets, tmp_path, words)


# --------------------------------------------------------------------------------------------
# Issue 18, defect 4: a preview of a data set where nothing decodes, or every image is 1×1


def _set_of(root: Path, body: bytes, per_class: int = 3) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            (root / cls / f"{i}.png").write_bytes(body)
    return root


@pytest.mark.parametrize("body, words", [
    (_png(size=(1, 1)), "1×1"),
    (_png(size=(2, 9)), "2×9"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "cannot be decoded|not an image"),
    (b"<html>not a picture</html>", "HTML"),
])
def test_a_preview_where_nothing_decodes_is_a_sentence(tmp_path, body, words):
    from engine.data.summary import preview_batch
    from engine.settings import RunSettings

    folder = _set_of(tmp_path / "set", body)
    for augment in (True, False):
        with pytest.raises(DataError, match=rf"None of the \d+ training images") as err:
            preview_batch(RunSettings(folder=str(folder), size=16), augment=augment)
        assert re.search(words, str(err.value)) and len(str(err.value)) < 400


def test_a_preview_skips_the_files_that_do_not_decode(tmp_path):
    from engine.data.summary import preview_batch
    from engine.settings import RunSettings

    folder = _set_of(tmp_path / "set", _png(size=(1, 1)))
    for cls in ("a", "b"):                     # at most one image per class is held out
        for i in range(3):
            (folder / cls / f"good{i}.png").write_bytes(_png(size=(20, 20)))
    grid = preview_batch(RunSettings(folder=str(folder), size=16, valid_pct=0.05), augment=True)
    assert grid.dtype == np.uint8 and grid.ndim == 3


def test_grids_take_any_batch_and_refuse_the_rest_in_a_sentence():
    assert data.grid_image(np.zeros((0, 8, 8, 3), np.uint8), [], tile=20).shape == (20, 20, 3)
    one_pixel = data.grid_image(np.full((3, 1, 1, 3), 200, np.uint8), ["a", "b", "c"], tile=10)
    assert one_pixel.dtype == np.uint8 and one_pixel[5, 5].tolist() == [200, 200, 200]
    grey = data.grid_image(np.zeros((2, 4, 4), np.uint8), ["a", "b"], ncols=-3, tile=10)
    assert grey.ndim == 3 and grey.shape[2] == 3
    for bad in (np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4, 4, 2), np.uint8),
                np.zeros((2, 0, 4, 3), np.uint8), np.zeros(5, np.uint8)):
        with pytest.raises(DataError):
            data.grid_image(bad, ["x"])
    with pytest.raises(DataError):
        data.grid_image(np.zeros((1, 4, 4, 3), np.uint8), ["x"], tile=0)


def test_augmenting_an_empty_batch_gives_an_empty_batch():
    x = torch.zeros(0, 3, 16, 16)
    out = data.batch_augment(DataConfig(size=16))(x)
    assert out.shape == (0, 3, 16, 16)


# Issue 18, defect 9: files that are not plain files, links under data/folders ---------------------


def _odd_entries(folder: Path, outside: Path) -> list[str]:
    """Things named like images that are not plain files: a FIFO (opening it waits for ever for a
    writer), a Unix socket, links to a file inside and outside the set and to /dev/zero (endless),
    a dangling link, a folder named like an image. Returns their names."""
    import socket as socket_module
    os.mkfifo(folder / "fifo.png")
    sock = socket_module.socket(socket_module.AF_UNIX)
    try:
        sock.bind(str(folder / "sock.png"))
    finally:
        sock.close()
    outside.mkdir(exist_ok=True)
    (outside / "secret.png").write_bytes(_png((1, 2, 3)))
    (folder / "link-out.png").symlink_to(outside / "secret.png")
    (folder / "link-in.png").symlink_to(folder / "img000.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "dangling.png").symlink_to(folder / "nothing-here.png")
    (folder / "dir.png").mkdir()
    return ["fifo.png", "sock.png", "link-out.png", "link-in.png", "zero.png", "dangling.png",
            "dir.png"]


def _in_thread(fn, timeout: float = 30.0):
    """fn() on a daemon thread, failing the test (instead of hanging it) if fn blocks."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked (a FIFO opened as an image waits for ever)"
    return out[0]


def test_only_plain_files_count_as_images(tmp_path):
    root = _make_classes(tmp_path / "set", {"cat": 3, "dog": 3})
    odd = _odd_entries(root / "cat", tmp_path / "outside")
    names = [p.name for p in data.files.image_files(root / "cat")]
    assert names == ["img000.png", "img001.png", "img002.png"]
    assert not set(odd) & set(names)
    assert [data.files.is_regular_file(root / "cat" / n) for n in odd] == [False] * len(odd)
    items = _in_thread(lambda: data.load_items(root))
    assert len(items.train) + len(items.valid) == 6
    assert _in_thread(lambda: data.verify_images(root)) == []       # nothing odd was opened
    from engine.data.summary import class_counts
    counts = _in_thread(lambda: class_counts(root))
    assert sum(counts["train"]) + sum(counts["valid"]) == 6
    assert (root / "cat" / "fifo.png").exists()                     # nothing odd was moved either
    _in_thread(lambda: data.verify_images(root, delete=True))
    assert sorted(p.name for p in (root / "cat").iterdir()) == sorted(odd + names)


def test_a_fifo_among_training_files_is_not_scored_by_the_cleaner(tmp_path):
    from engine import cleaner
    root = _make_classes(tmp_path / "set", {"cat": 3, "dog": 3})
    _odd_entries(root / "cat", tmp_path / "outside")
    files = _in_thread(lambda: cleaner.training_files(root, "cat"))
    assert [Path(f).name for f in files] == ["img000.png", "img001.png", "img002.png"]


def test_server_folders_lists_real_folders_only(tmp_path):
    from engine.data.files import server_folder, server_folders
    root = tmp_path / "appdata" / "folders"
    _make_classes(root / "bears", {"grizzly": 2, "teddy": 2})
    _make_classes(tmp_path / "elsewhere" / "secret", {"a": 2, "b": 2})
    (root / "escape").symlink_to(tmp_path / "elsewhere" / "secret")       # outside the data dir
    (root / "inside").symlink_to(root / "bears")                          # a link, even inside
    (root / "etc").symlink_to("/etc")
    (root / "dangling").symlink_to(tmp_path / "gone")
    (root / ".hidden").mkdir()
    (root / "notes.txt").write_text("a file, not a set")
    os.mkfifo(root / "pipe")
    assert server_folders(root) == ["bears"]
    assert server_folder(root, "bears") == root / "bears"
    for name in ("escape", "inside", "etc", "dangling", ".hidden", "notes.txt", "pipe", "../..",
                 "bears/../escape", "/etc", "", "missing"):
        with pytest.raises(DataError, match="no data set folder named"):
            server_folder(root, name)
    assert server_folders(tmp_path / "no-such-folder") == []
