"""The CelebA reader (paw_ray.data.annotations, paw_ray.data.celeba): layouts, the real
files' quirks, every bad input with the file and line it names, --allow-partial counts, and
prepare end to end on a real local Ray (the ``ray_local`` fixture) in both modes."""

from __future__ import annotations

import hashlib
import io
import json
import time
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from celeba_fixtures import huge_jpeg, make_celeba
from paw_ray import cli
from paw_ray.attributes import ATTRIBUTES
from paw_ray.data import annotations as A
from paw_ray.data import celeba
from paw_ray.data import facebox, shards

ATTR_HEADER = " ".join(ATTRIBUTES)


def _load(fx, aligned=False, **kw) -> celeba.Plan:
    return celeba.load_annotations(celeba.find_files(str(fx.root), aligned), **kw)


def _raises_at(fn, path, line, match):
    """``fn()`` raises CelebAError naming ``path`` and ``line`` and matching ``match``."""
    with pytest.raises(celeba.CelebAError, match=match) as e:
        fn()
    msg = str(e.value)
    assert str(path) in msg, msg
    if line is not None:
        assert f"line {line}:" in msg, msg
    return msg


# --------------------------------------------------------------------------- parsing and layouts


def test_parse_official_attr_file_with_every_quirk(tmp_path):
    fx = make_celeba(tmp_path, crlf=True)
    raw = fx.paths["attr"].read_bytes()
    # the fixture has the quirks: count line, names line with trailing space, runs of
    # spaces before right-aligned 1s, CRLF, trailing blank lines
    assert raw.startswith(b"12\r\n5_o_Clock_Shadow ") and b"Young \r\n" in raw
    assert b"  1" in raw and raw.endswith(b"\r\n\r\n")
    ann = A.parse_annotation(str(fx.paths["attr"]), "attr")
    assert ann.ids == fx.ids and ann.declared_rows == 12 and ann.num_rows == 12
    np.testing.assert_array_equal(ann.values, fx.labels * 2 - 1)
    assert ann.lines.tolist() == list(range(3, 15))
    assert not ann.problems and not ann.warnings


def test_parse_partition_file_has_neither_count_nor_names(tmp_path):
    fx = make_celeba(tmp_path)
    assert fx.lines("partition")[0] == "000001.jpg 0"
    ann = A.parse_annotation(str(fx.paths["partition"]), "partition")
    assert ann.declared_rows is None and ann.lines[0] == 1
    assert [("train", "val", "test")[v] for v in ann.values[:, 0]] == fx.splits


@pytest.mark.parametrize("layout", ["official", "flat", "csv"])
def test_every_layout_gives_the_same_rows(tmp_path, layout):
    fx = make_celeba(tmp_path, layout=layout, wild_images=True)
    files = celeba.find_files(str(fx.root), aligned=False)
    assert files.layout == layout
    plan = celeba.load_annotations(files)
    assert plan.ids == fx.ids
    np.testing.assert_array_equal(plan.labels, fx.labels)
    assert list(plan.splits) == fx.splits
    np.testing.assert_array_equal(plan.bbox, fx.bboxes)
    if layout == "csv":  # the CSV edition has no in-the-wild landmarks
        assert plan.landmarks is None
    else:
        np.testing.assert_array_equal(plan.landmarks, fx.landmarks)


def test_lf_line_ends_tabs_and_old_mac_line_ends(tmp_path):
    fx = make_celeba(tmp_path, crlf=False)
    assert b"\r" not in fx.paths["attr"].read_bytes()
    assert _load(fx).ids == fx.ids
    fx.paths["bbox"].write_bytes(fx.paths["bbox"].read_bytes().replace(b"\n", b"\r").replace(b"  ", b"\t"))
    np.testing.assert_array_equal(A.parse_annotation(str(fx.paths["bbox"]), "bbox").values, fx.bboxes)


def test_attribute_columns_in_another_order_are_reordered_by_name(tmp_path):
    fx = make_celeba(tmp_path, layout="csv")
    lines = fx.lines("attr")
    swap = lambda cells: [cells[0], cells[2], cells[1]] + cells[3:]  # noqa: E731
    fx.rewrite("attr", lambda ls: [",".join(swap(line.split(","))) if line else line for line in ls])
    assert fx.lines("attr")[0].startswith("image_id,Arched_Eyebrows,5_o_Clock_Shadow,") and lines != fx.lines("attr")
    ann = A.parse_annotation(str(fx.paths["attr"]), "attr")
    np.testing.assert_array_equal(ann.values, fx.labels * 2 - 1)


def test_missing_files_are_listed_with_the_places_looked_in(tmp_path):
    fx = make_celeba(tmp_path)
    fx.paths["partition"].unlink()
    fx.paths["bbox"].unlink()
    fx.paths["landmarks"].unlink()
    with pytest.raises(celeba.CelebAError) as e:
        celeba.find_files(str(fx.root))
    msg = str(e.value)
    assert str(fx.root) in msg and "Eval/list_eval_partition.txt" in msg and "list_eval_partition.csv" in msg
    assert "without one, --split-fraction 0.8,0.1,0.1 splits by image id" in msg
    assert "Anno/list_bbox_celeba.txt" in msg and "Anno/list_landmarks_celeba.txt" in msg
    assert "list_attr" not in msg  # it was found
    with pytest.raises(celeba.CelebAError, match="does not exist"):
        celeba.find_files(str(tmp_path / "nowhere"))


def test_landmarks_alone_are_a_box_source(tmp_path):
    fx = make_celeba(tmp_path)
    fx.paths["bbox"].unlink()
    plan = _load(fx)
    assert plan.bbox is None and plan.files.bbox is None
    np.testing.assert_array_equal(plan.landmarks, fx.landmarks)


def test_no_image_folder_hints_at_the_other_mode(tmp_path):
    fx = make_celeba(tmp_path, layout="csv")  # the Kaggle edition: aligned images only
    msg = _raises_at(lambda: celeba.prepare_celeba(str(fx.root), str(tmp_path / "out")), fx.root, None,
                     "no folder of in-the-wild CelebA images")
    assert "img_celeba" in msg and "add --aligned" in msg
    assert not (tmp_path / "out").exists()


def test_parse_speed_202599_rows(tmp_path):
    """Vectorised parsing: the real attribute file's size in about a second."""
    n = 202_599
    rng = np.random.default_rng(0)
    v = rng.choice(np.array([-1, 1]), size=(n, 40))
    # fixed-width rows as in the real file: "000001.jpg" then " -1" / "  1" x 40, CRLF
    rows = np.full((n, 10 + 3 * 40 + 2), ord(" "), dtype=np.uint8)
    num = np.arange(1, n + 1)
    for d in range(6):
        rows[:, 5 - d] = 48 + (num // 10**d) % 10
    rows[:, 6:10] = np.frombuffer(b".jpg", dtype=np.uint8)
    rows[:, 11:130:3] = np.where(v < 0, ord("-"), ord(" "))
    rows[:, 12:131:3] = ord("1")
    rows[:, -2:] = np.frombuffer(b"\r\n", dtype=np.uint8)
    path = tmp_path / "list_attr_celeba.txt"
    path.write_bytes(f"{n}\r\n{ATTR_HEADER} \r\n".encode() + rows.tobytes())
    t, cpu = time.perf_counter(), time.process_time()
    ann = A.parse_annotation(str(path), "attr")
    secs, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"parsed {n} attribute rows in {secs:.2f} s ({cpu:.2f} s CPU)")
    assert ann.values.shape == (n, 40) and ann.ids[-1] == "202599.jpg" and ann.lines[-1] == n + 2
    np.testing.assert_array_equal(ann.values, v)
    assert cpu < 10  # ~1.3 s CPU here; generous for a loaded CI box


# --------------------------------------------------------------------------- CSV variants that circulate


def _attr_csv(fx, *, bom=b"", first=b"image_id", sep=b",", quote=b"", eol=b"\n", neg=b"-1", pos=b"1") -> bytes:
    """``fx``'s attribute file as a CSV variant: its header's first cell, separator, quoting,
    line ends, BOM and spelling of the values, byte for byte."""
    q = lambda cell: quote + cell + quote  # noqa: E731
    lines = [sep.join(q(c) for c in [first] + [a.encode() for a in ATTRIBUTES])]
    for image_id, row in zip(fx.ids, fx.labels):
        lines.append(sep.join(q(c) for c in [image_id.encode()] + [pos if v else neg for v in row]))
    return bom + eol.join(lines) + eol


def _with_cell(data: bytes, line: int, cell: int, value: bytes) -> bytes:
    """The CSV ``data`` (LF, "," between cells) with cell ``cell`` (0: the id) of ``line`` set to ``value``."""
    lines = data.split(b"\n")
    cells = lines[line - 1].split(b",")
    cells[cell] = value
    lines[line - 1] = b",".join(cells)
    return b"\n".join(lines)


# (name, how the variant is written, bytes the file must hold)
ATTR_CSV_VARIANTS = [
    ("empty first cell (pandas index)", {"first": b""}, [b",5_o_Clock_Shadow,Arched_Eyebrows,", b"\n000001.jpg,"]),
    ("id header", {"first": b"id"}, [b"id,5_o_Clock_Shadow,Arched_Eyebrows,"]),
    ("Unnamed: 0 header", {"first": b"Unnamed: 0"}, [b"Unnamed: 0,5_o_Clock_Shadow,"]),
    ("filename header", {"first": b"filename"}, [b"filename,5_o_Clock_Shadow,"]),
    ("UTF-8 BOM", {"bom": b"\xef\xbb\xbf"}, [b"\xef\xbb\xbfimage_id,5_o_Clock_Shadow,"]),
    ("CRLF", {"eol": b"\r\n"}, [b",Young\r\n000001.jpg,", b"\r\n000012.jpg,"]),
    ("spaces after commas", {"sep": b", "}, [b"image_id, 5_o_Clock_Shadow, Arched_Eyebrows, ", b"\n000001.jpg, "]),
    ("quoted cells", {"quote": b'"'}, [b'"image_id","5_o_Clock_Shadow","Arched_Eyebrows",', b'\n"000001.jpg","']),
    ("0/1 values", {"neg": b"0"}, [b",0,", b",1,"]),
    ("False/True values", {"neg": b"False", "pos": b"True"}, [b",False,", b",True,"]),
    ("all at once", {"bom": b"\xef\xbb\xbf", "first": b"", "sep": b", ", "quote": b'"', "eol": b"\r\n",
                     "neg": b"False", "pos": b"True"},
     [b'\xef\xbb\xbf"", "5_o_Clock_Shadow", ', b'"Young"\r\n"000001.jpg", "', b'"False"', b'"True"']),
]


@pytest.mark.parametrize("name, variant, holds", ATTR_CSV_VARIANTS, ids=[v[0] for v in ATTR_CSV_VARIANTS])
def test_attribute_csv_variants_are_read(tmp_path, name, variant, holds):
    fx = make_celeba(tmp_path, layout="csv")
    data = _attr_csv(fx, **variant)
    for fragment in holds:
        assert fragment in data, fragment
    fx.paths["attr"].write_bytes(data)
    ann = A.parse_annotation(str(fx.paths["attr"]), "attr")
    assert ann.ids == fx.ids and ann.lines.tolist() == list(range(2, 14)) and not ann.problems
    np.testing.assert_array_equal(ann.values, fx.labels * 2 - 1)  # -1/1 whatever the file's spelling


def test_official_text_file_with_0_1_values(tmp_path):
    fx = make_celeba(tmp_path)
    fx.rewrite("attr", lambda ls: ls[:2] + [line.replace("-1", " 0") for line in ls[2:]])
    assert fx.lines("attr")[2].startswith("000001.jpg ") and " 0" in fx.lines("attr")[2]
    assert "-1" not in fx.paths["attr"].read_text()
    np.testing.assert_array_equal(A.parse_annotation(str(fx.paths["attr"]), "attr").values, fx.labels * 2 - 1)


PARTITION_VARIANTS = [
    ("id header", "csv", b"id,partition\n000001.jpg,0\n000002.jpg,1\n000003.jpg,2\n"),
    ("empty first cell, CRLF", "csv", b",partition\r\n000001.jpg,0\r\n000002.jpg,1\r\n000003.jpg,2\r\n"),
    ("Unnamed: 0, words", "csv", b"Unnamed: 0,partition\n000001.jpg,train\n000002.jpg,val\n000003.jpg,test\n"),
    ("BOM, quoted, CRLF, words", "csv",
     b'\xef\xbb\xbf"image_id","partition"\r\n"000001.jpg","train"\r\n"000002.jpg","val"\r\n"000003.jpg","test"\r\n'),
    ("spaces after commas", "csv", b"image_id, partition\n000001.jpg, 0\n000002.jpg, 1\n000003.jpg, 2\n"),
    ("official text file, words", "txt", b"000001.jpg train\r\n000002.jpg Val\r\n000003.jpg TEST\r\n"),
]


@pytest.mark.parametrize("name, ext, data", PARTITION_VARIANTS, ids=[v[0] for v in PARTITION_VARIANTS])
def test_partition_variants_are_read(tmp_path, name, ext, data):
    path = tmp_path / f"list_eval_partition.{ext}"
    path.write_bytes(data)
    ann = A.parse_annotation(str(path), "partition")
    assert ann.ids == ["000001.jpg", "000002.jpg", "000003.jpg"] and ann.values[:, 0].tolist() == [0, 1, 2]


def test_box_csv_with_an_unnamed_quoted_first_column(tmp_path):
    path = tmp_path / "list_bbox_celeba.csv"
    path.write_bytes(b'"Unnamed: 0","x_1","y_1","width","height"\r\n"000001.jpg","95","71","226","313"\r\n')
    ann = A.parse_annotation(str(path), "bbox")
    assert ann.ids == ["000001.jpg"] and ann.values.tolist() == [[95, 71, 226, 313]]


def test_csv_edition_with_the_empty_first_cell_and_id_headers_prepares_its_rows(tmp_path):
    """The two files seen refused in issue 15: pandas' attribute CSV, an ``id,partition`` file."""
    fx = make_celeba(tmp_path, layout="csv", wild_images=True)
    fx.set_line("attr", 1, "," + ",".join(ATTRIBUTES))
    fx.set_line("partition", 1, "id,partition")
    assert fx.paths["attr"].read_bytes().startswith(b",5_o_Clock_Shadow,")
    assert fx.paths["partition"].read_bytes().startswith(b"id,partition\r\n000001.jpg,0\r\n")
    plan = _load(fx)
    assert plan.ids == fx.ids and list(plan.splits) == fx.splits
    np.testing.assert_array_equal(plan.labels, fx.labels)


# (name, file bytes, line named, message pattern): anything else is still refused
CSV_REFUSED = [
    ("-1 and 0 mixed", "attr", lambda fx: _with_cell(_attr_csv(fx), 5, 1, b"0"), 5,
     r"000004.jpg: 5_o_Clock_Shadow is 0; must be -1 or 1, as on line 2"),
    ("0/1 with a -1", "attr", lambda fx: _with_cell(_attr_csv(fx, neg=b"0"), 4, 1, b"-1"), 4,
     r"000003.jpg: 5_o_Clock_Shadow is -1; must be 0 or 1, as on line 2"),
    ("a word that is not a value", "attr", lambda fx: _with_cell(_attr_csv(fx), 3, 1, b"yes"), 3,
     r"value 1 \(5_o_Clock_Shadow\) 'yes' is not an integer \(values may be -1/1, 0/1 or False/True\)"),
    ("quotes that do not close", "attr", lambda fx: _attr_csv(fx, quote=b'"').replace(b'"000006.jpg"', b'"000006.jpg'),
     7, r'"000006.jpg: the quotes of this line do not parse \(\S'),
    ("partition word not a split", "partition",
     lambda fx: b"image_id,partition\r\n000001.jpg,train\r\n000002.jpg,validation\r\n", 3,
     r"'validation' is not an integer \(values may be 0/1/2 or train/val/test\)"),
    ("id header with another column", "partition", lambda fx: b"id,split\r\n000001.jpg,0\r\n", 1,
     r"column names of list_eval_partition \(partition\).*missing \['partition'\]; unknown \['split'\]"),
    ("an extra attribute column", "attr", lambda fx: _attr_csv(fx, first=b"image_id,Extra"), 1,
     r"found 42 column names; unknown \['image_id', 'Extra'\]"),
]


@pytest.mark.parametrize("name, kind, data, line, pattern", CSV_REFUSED, ids=[v[0] for v in CSV_REFUSED])
def test_csv_that_is_none_of_the_variants_is_refused_with_file_and_line(tmp_path, name, kind, data, line, pattern):
    fx = make_celeba(tmp_path, layout="csv")
    fx.paths[kind].write_bytes(data(fx))
    _raises_at(lambda: _load(fx, aligned=True), fx.paths[kind], line, pattern)


# --------------------------------------------------------------------------- bad input, strict


def _cut_last_row(fx):
    def fn(lines):
        lines = [line for line in lines if line.strip()]
        lines[-1] = lines[-1][: len(lines[-1]) // 2]
        return lines
    return fn


# (name, file kind, mutation(fx), line of the error (fn of fx), message pattern)
BAD_INPUTS = [
    ("row count disagrees", "attr", lambda fx: fx.set_line("attr", 1, "13"), lambda fx: 1,
     "row count says 13 rows but the file has 12"),
    ("truncated file", "attr", lambda fx: fx.rewrite("attr", _cut_last_row(fx)), lambda fx: 14,
     "expected 40 values after the image id, found 1[0-9]"),
    ("too few values", "bbox", lambda fx: fx.set_line("bbox", 7, "000005.jpg  1 2 3"), lambda fx: 7,
     "000005.jpg: expected 4 values after the image id, found 3"),
    ("too many values", "attr",
     lambda fx: fx.set_line("attr", 5, fx.lines("attr")[4] + " 1"), lambda fx: 5, "expected 40 values.*found 41"),
    ("value outside -1/1", "attr",
     lambda fx: fx.set_line("attr", 6, fx.lines("attr")[5][:-2] + " 2"), lambda fx: 6, "Young is 2; must be -1 or 1"),
    ("zero is not a CelebA attribute value", "attr",
     lambda fx: fx.set_line("attr", 6, fx.lines("attr")[5][:-2] + " 0"), lambda fx: 6, "must be -1 or 1"),
    ("partition value 3", "partition", lambda fx: fx.set_line("partition", 4, "000004.jpg 3"), lambda fx: 4,
     r"partition is 3; must be 0 \(train\), 1 \(val\) or 2 \(test\)"),
    ("non-integer landmark", "landmarks",
     lambda fx: fx.set_line("landmarks", 3, "000001.jpg 12.5 20 30 20 25 26 15 33 29 33"), lambda fx: 3,
     r"value 1 \(lefteye_x\) '12.5' is not an integer"),
    ("word where a number is needed", "bbox", lambda fx: fx.set_line("bbox", 8, "000006.jpg 1 two 3 4"),
     lambda fx: 8, "'two' is not an integer"),
    ("duplicate id", "attr",
     lambda fx: fx.set_line("attr", 10, fx.lines("attr")[8]), lambda fx: 9,
     r"image id 000007.jpg appears more than once \(lines 9, 10\)"),
    ("not an image file name", "partition", lambda fx: fx.set_line("partition", 2, "hello 0"), lambda fx: 2,
     "'hello' is not an image file name"),
    ("wrong names line", "attr",
     lambda fx: fx.set_line("attr", 2, ATTR_HEADER.replace("Smiling", "Smiles")), lambda fx: 2,
     r"missing \['Smiling'\]; unknown \['Smiles'\]"),
    ("not UTF-8", "landmarks",
     lambda fx: fx.paths["landmarks"].write_bytes(fx.paths["landmarks"].read_bytes().replace(b"000004.jpg", b"\xff00004.jpg")),
     lambda fx: 6, "not UTF-8 text"),
    ("empty file", "partition", lambda fx: fx.paths["partition"].write_bytes(b"\r\n\r\n"), lambda fx: None,
     "the file is empty"),
]


@pytest.mark.parametrize("name, kind, mutate, line, pattern", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_annotation_input_names_file_and_line(tmp_path, name, kind, mutate, line, pattern):
    fx = make_celeba(tmp_path)
    mutate(fx)
    _raises_at(lambda: _load(fx), fx.paths[kind], line(fx), pattern)


def test_id_in_attr_but_not_in_partition(tmp_path):
    fx = make_celeba(tmp_path)
    fx.rewrite("partition", lambda ls: [line for line in ls if not line.startswith("000007.jpg")])
    msg = _raises_at(lambda: _load(fx), fx.paths["attr"], 9, "image 000007.jpg is not in")
    assert str(fx.paths["partition"]) in msg


def test_id_in_bbox_but_not_in_attr(tmp_path):
    fx = make_celeba(tmp_path)
    fx.rewrite("bbox", lambda ls: ls[:14] + ["000099.jpg  1  2  30  30"] + ls[14:])
    fx.set_line("bbox", 1, "13")
    msg = _raises_at(lambda: _load(fx), fx.paths["bbox"], 15, "image 000099.jpg is not in")
    assert str(fx.paths["attr"]) in msg


def test_csv_edition_bad_inputs(tmp_path):
    fx = make_celeba(tmp_path, layout="csv")
    line = fx.lines("attr")[3].split(",")
    fx.set_line("attr", 4, ",".join(line[:5] + [""] + line[6:]))
    _raises_at(lambda: _load(fx, aligned=True), fx.paths["attr"], 4, r"value 5 \(Bald\) is empty")
    fx = make_celeba(tmp_path / "b", layout="csv")
    fx.set_line("partition", 1, "image_id,split,extra")
    _raises_at(lambda: _load(fx, aligned=True), fx.paths["partition"], 1, "column names of list_eval_partition")
    fx = make_celeba(tmp_path / "c", layout="csv")
    fx.rewrite("attr", lambda ls: ls[1:])  # no header row
    _raises_at(lambda: _load(fx, aligned=True), fx.paths["attr"], 1, "expected a header row image_id,")


# --------------------------------------------------------------------------- --allow-partial, --limit


def test_allow_partial_keeps_the_consistent_rows_and_counts_the_rest(tmp_path):
    fx = make_celeba(tmp_path)
    fx.set_line("attr", 4, fx.lines("attr")[3][:-2] + " 5")  # 000002: bad attribute value
    fx.set_line("bbox", 5, "000003.jpg 1 2 3")  # 000003: wrong number of values
    fx.rewrite("partition", lambda ls: [line for line in ls if not line.startswith("000004.jpg")])  # 000004: no split
    fx.set_line("landmarks", 8, fx.lines("landmarks")[6])  # 000005 twice, 000006 gone
    fx.rewrite("partition", lambda ls: ls + ["000099.jpg 0"])  # a row for an image we do not know
    fx.set_line("bbox", 1, "15")  # count line disagrees: a warning in partial mode
    with pytest.raises(celeba.CelebAError):
        _load(fx)
    plan = _load(fx, allow_partial=True)
    assert plan.ids == [fx.ids[i] for i in (0, 6, 7, 8, 9, 10, 11)]
    np.testing.assert_array_equal(plan.labels, fx.labels[[0, 6, 7, 8, 9, 10, 11]])
    assert dict(plan.dropped.counts) == {
        "list_attr_celeba.txt: value outside -1/1": 1,
        "list_bbox_celeba.txt: wrong number of values": 1,
        "list_attr_celeba.txt: image not in list_eval_partition.txt": 1,
        "list_landmarks_celeba.txt: duplicate image id": 1,
        "list_attr_celeba.txt: image not in list_landmarks_celeba.txt": 1,
        "list_eval_partition.txt: image not in list_attr_celeba.txt": 1,
    }
    assert any("row count says 15" in w and str(fx.paths["bbox"]) in w for w in plan.warnings)
    ex = plan.dropped.examples["list_bbox_celeba.txt: wrong number of values"]
    assert str(fx.paths["bbox"]) in ex and "line 5:" in ex


def test_partial_counts_a_duplicated_image_once(tmp_path):
    fx = make_celeba(tmp_path)
    fx.rewrite("attr", lambda ls: ls[:9] + [ls[8].replace(" 1", "-1", 1)] + ls[9:])  # 000007 again, differing
    fx.set_line("attr", 1, "13")
    plan = _load(fx, allow_partial=True)
    assert plan.ids == fx.ids[:6] + fx.ids[7:]
    assert dict(plan.dropped.counts) == {"list_attr_celeba.txt: duplicate image id": 1}
    assert "(lines 9, 10)" in plan.dropped.examples["list_attr_celeba.txt: duplicate image id"]


def test_limit_keeps_the_first_ids_in_file_order(tmp_path):
    fx = make_celeba(tmp_path)
    fx.set_line("attr", 12, fx.lines("attr")[11][:-2] + " 7")  # 000010 bad, beyond the limit
    plan = _load(fx, limit=5, allow_partial=True)
    assert plan.ids == fx.ids[:5] and plan.dropped.total == 0
    plan = _load(fx, limit=10, allow_partial=True)
    assert plan.ids == fx.ids[:9] and plan.dropped.total == 1
    with pytest.raises(celeba.CelebAError, match="line 12:"):  # strict: the files must be valid as a whole
        _load(fx, limit=5)


# --------------------------------------------------------------------------- prepare, end to end on Ray


def _read_rows(out):
    info = shards.read_info(str(out))
    rows = {}
    for split in shards.SPLITS:
        for f in shards.shard_files(str(out), info, split):
            t = pq.read_table(f)
            shards.validate_table(t, f)
            for r in t.to_pylist():
                rows[r["image_id"]] = r
    return info, rows


def _rgb(blob):
    img = Image.open(io.BytesIO(blob))
    img.load()
    return img


@pytest.fixture(scope="module")
def wild(ray_local, tmp_path_factory):
    """One in-the-wild edition prepared once: a grey, a CMYK, a degenerate-box image, an
    unusual (wide, short) one and a large one (draft decode); what it wrote and said."""
    tmp = tmp_path_factory.mktemp("wild")
    sizes = {5: (120, 30), 6: (400, 480)}
    boxes = {5: (40, 0, 40, 30), 6: (100, 100, 200, 240)}
    fx = make_celeba(tmp / "celeba", gray=(3,), cmyk=(4,), degenerate_box=(2,), sizes=sizes, boxes=boxes)
    out = tmp / "out"
    said = []
    info = celeba.prepare_celeba(str(fx.root), str(out), image_size=32, margin=0.1, chunk_size=4, progress=said.append)
    written_info, rows = _read_rows(out)
    return SimpleNamespace(fx=fx, info=info, written_info=written_info, rows=rows, said=said, out=str(out))


def test_prepare_writes_the_splits_in_chunked_shards(wild):
    info = wild.info
    assert info.name == "celeba" and info.image_size == 32
    assert info.num_rows == {"train": 8, "val": 2, "test": 2}
    assert info.files["train"] == ["train/shard-00000.parquet", "train/shard-00001.parquet"]
    assert wild.written_info == info and sorted(wild.rows) == wild.fx.ids
    out = wild.out
    for rel in (r for split in shards.SPLITS for r in info.files[split]):  # each shard's content as written
        data = open(f"{out}/{rel}", "rb").read()
        assert info.content[rel] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, rel


def test_prepare_records_where_the_boxes_came_from(wild):
    source = wild.info.source
    assert source["box_source"] == {"bbox": 11, "landmarks": 1}
    assert source["dropped"] == {} and source["layout"] == "official" and not source["aligned"]


def test_prepare_keeps_each_rows_split_labels_and_face_box(wild):
    fx = wild.fx
    for i, image_id in enumerate(fx.ids):
        r = wild.rows[image_id]
        assert r["split"] == fx.splits[i]
        assert r["labels"] == fx.labels[i].tolist()
        W, H = fx.sizes[image_id]
        expected, src = facebox.face_square(None if i == 2 else fx.bboxes[i], fx.landmarks[i], W, H, 0.1)
        assert src == ("landmarks" if i == 2 else "bbox"), "a degenerate box falls back to the landmarks"
        np.testing.assert_allclose(r["face_box"], expected)


def test_prepare_stores_the_square_cut_from_the_source(wild):
    fx = wild.fx
    for image_id in fx.ids:
        img = _rgb(wild.rows[image_id]["image"])
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (32, 32)
        got = np.asarray(img).astype(int)
        expected = wild.rows[image_id]["face_box"]
        src_img = Image.open(fx.image_path(image_id)).convert("RGB")
        ref = np.asarray(facebox.cut_square(src_img, expected, 32)).astype(int)
        # JPEG re-encoding (4:2:0 chroma) and the draft decode of the large image move single
        # pixels; 4x4-block means match within 6 levels (a cut 2 px off is 10-15 away)
        blk = lambda a: a.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3))  # noqa: E731
        assert np.abs(blk(got) - blk(ref)).mean() < 6, image_id


def test_prepare_turns_grey_and_cmyk_images_into_rgb(wild):
    """The face box is painted red in every source image: its centre, mapped into the cut, is
    red in RGB (CMYK included), and grey stays grey in three equal channels."""
    fx = wild.fx
    for i, image_id in enumerate(fx.ids):
        got = np.asarray(_rgb(wild.rows[image_id]["image"])).astype(int)
        x, y, s, _ = wild.rows[image_id]["face_box"]
        bx, by, bw, bh = fx.bboxes[i]
        c = got[int((by + bh / 2 - y) / s * 32), int((bx + bw / 2 - x) / s * 32)]
        if i == 3:
            assert c[0] == pytest.approx(c[1], abs=3) == pytest.approx(c[2], abs=3)
        else:
            assert c[0] > 150 and c[1] < 100 and c[2] < 100, (image_id, c)


def test_prepare_pads_a_box_taller_than_its_image_with_black_bands(wild):
    """The 120x30 image: box (40, 0, 40, 30) + 10% margin -> (36, -3, 48, 36) -> a 48-px
    square, taller than the image: it covers the image's height, black bands top and bottom."""
    assert wild.rows["000006.jpg"]["face_box"] == [36.0, -9.0, 48.0, 48.0]
    wide = np.asarray(_rgb(wild.rows["000006.jpg"]["image"])).astype(int)
    assert wide[0].max() < 40 and wide[-1].max() < 40 and wide[16, 16, 0] > 150


def test_prepare_shows_progress_and_a_summary(wild):
    assert any("12/12 images, 4/4 shards" in m and "images/s" in m for m in wild.said)
    assert "wrote 12 images (train 8, val 2, test 2)" in wild.said[-1]


def test_prepare_with_the_detector_cuts_the_faces_it_finds_and_falls_back_to_the_annotations(ray_local, tmp_path):
    """``--face-source detector``: image 0 is the astronaut, image 1 the astronaut and her
    mirror image with the annotated box on the mirror image; the detector's face (the one
    overlapping the annotated box) is cut by the face-box rule. The others hold no face:
    annotated box, or the landmarks' box where the annotated one is degenerate."""
    from paw_ray.data.detect import FaceDetector
    from photos import astronaut, two_faces

    sizes = {0: (512, 512), 1: (1024, 512)}
    boxes = {0: (160, 50, 120, 140), 1: (740, 60, 120, 140)}
    fx = make_celeba(tmp_path / "celeba", n=6, sizes=sizes, boxes=boxes, degenerate_box=(2,))
    photos = [astronaut(), two_faces()]
    for i, photo in enumerate(photos):
        photo.save(fx.image_path(fx.ids[i]), format="JPEG", quality=95)
    said = []
    info = celeba.prepare_celeba(str(fx.root), str(tmp_path / "out"), image_size=32, margin=0.1,
                                 face_source="detector", progress=said.append)
    assert info.source["box_source"] == {"detector": 2, "bbox": 3, "landmarks": 1}
    assert info.source["face_source"] == "detector" and info.source["detection"]["min_face"] == 40
    assert "face boxes from: 2 detector, 3 bbox, 1 landmarks" in said
    _, rows = _read_rows(tmp_path / "out")
    detector = FaceDetector()
    for i, photo in enumerate(photos):
        face = [f for f in detector(photo) if f.box[0] >= 512 * i][0]  # image 1: the annotated (right) face
        square, _ = facebox.face_square(face.box, None, *photo.size, margin=0.1)
        assert rows[fx.ids[i]]["face_box"] == pytest.approx(list(square))
    for i in range(2, 6):
        bbox = None if i == 2 else fx.bboxes[i]  # fx.bboxes holds the box before it was made degenerate
        expected, _ = facebox.face_square(bbox, fx.landmarks[i], *fx.sizes[fx.ids[i]], margin=0.1)
        assert rows[fx.ids[i]]["face_box"] == pytest.approx(list(expected))


def test_prepare_refuses_an_unknown_face_source(tmp_path):
    fx = make_celeba(tmp_path / "celeba", n=3)
    with pytest.raises(A.CelebAError, match="face source 'mtcnn': one of annotations, detector"):
        celeba.prepare_celeba(str(fx.root), str(tmp_path / "out"), face_source="mtcnn")


def test_prepare_aligned_csv_edition_with_limit_and_rerun(ray_local, tmp_path):
    fx = make_celeba(tmp_path / "kaggle", layout="csv", gray=(1,), cmyk=(2,))
    out = tmp_path / "out"
    said = []
    info = celeba.prepare_celeba(str(fx.root), str(out), aligned=True, image_size=24, limit=10, chunk_size=3,
                            progress=said.append)
    assert info.name == "celeba-aligned" and info.source["aligned"]
    assert info.num_rows == {"train": 8, "val": 2, "test": 0}  # the first 10 images: no test rows
    assert said[-1].startswith(f"warning: {out / 'dataset.json'}: split 'test' has no rows (train 8, val 2, test 0)")
    assert "--split-fraction" in said[-1]
    assert info.source["files"]["images"].endswith("img_align_celeba/img_align_celeba")
    assert sum(info.num_rows.values()) == 10 and len(info.files["train"]) == 3
    _, rows = _read_rows(out)
    assert sorted(rows) == fx.ids[:10]
    for i, image_id in enumerate(fx.ids[:10]):
        r = rows[image_id]
        assert r["face_box"] == [0.0, 0.0, 36.0, 44.0] and r["split"] == fx.splits[i]
        assert r["labels"] == fx.labels[i].tolist()
        a = np.asarray(_rgb(r["image"]))
        assert a.shape == (24, 24, 3)
        if i not in (1,):  # squashed, not cut: the yellow left half stays the left half
            assert a[12, 3, 0] > 180 and a[12, 3, 1] > 180 and a[12, 20, 0] < 120
    # a rerun into the same folder replaces the data set and leaves no stale shards
    info = celeba.prepare_celeba(str(fx.root), str(out), aligned=True, image_size=24, chunk_size=100)
    assert info.files["train"] == ["train/shard-00000.parquet"] and sum(info.num_rows.values()) == 12
    assert sorted(p.name for p in (out / "train").iterdir()) == ["shard-00000.parquet"]
    assert len(_read_rows(out)[1]) == 12


def _break_images(fx):
    """Zero bytes, truncated, not an image, a decompression bomb's header, missing, no face box."""
    fx.image_path("000001.jpg").write_bytes(b"")
    p = fx.image_path("000002.jpg")
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    fx.image_path("000003.jpg").write_bytes(b"this is not a JPEG\n")
    fx.image_path("000004.jpg").write_bytes(huge_jpeg(30000, 30000))
    fx.image_path("000005.jpg").unlink()
    fx.set_line("bbox", 8, "000006.jpg 0 0 0 0")
    fx.set_line("landmarks", 8, "000006.jpg " + " ".join(["0"] * 10))


def test_prepare_allow_partial_drops_bad_images_and_reports_them(ray_local, tmp_path):
    fx = make_celeba(tmp_path / "celeba")
    _break_images(fx)
    fx.set_line("attr", 9, fx.lines("attr")[8][:-2] + " 9")  # 000007: bad attribute value
    out = tmp_path / "out"
    said = []
    info = celeba.prepare_celeba(str(fx.root), str(out), allow_partial=True, image_size=16, chunk_size=4,
                            progress=said.append)
    assert info.source["dropped"] == {
        "empty image file": 1, "undecodable image": 2, "image too large": 1, "missing image": 1,
        "no usable face box": 1, "list_attr_celeba.txt: value outside -1/1": 1,
    }
    assert info.source["dropped_total"] == 7
    ex = info.source["dropped_examples"]
    assert str(fx.image_path("000002.jpg")) in ex["undecodable image"] or str(fx.image_path("000003.jpg")) in ex["undecodable image"]
    assert "line 8" in ex["no usable face box"] and str(fx.paths["bbox"]) in ex["no usable face box"]
    _, rows = _read_rows(out)
    assert sorted(rows) == fx.ids[7:]
    for image_id, r in rows.items():
        assert r["labels"] == fx.labels[fx.ids.index(image_id)].tolist()
    assert "dropped 7 rows" in said[-1] and "1 x missing image" in said[-1]


@pytest.mark.parametrize("bad, pattern", [
    (lambda p: p.write_bytes(b""), "empty file \\(0 bytes\\)"),
    (lambda p: p.write_bytes(p.read_bytes()[:300]), "truncated image"),
    (lambda p: p.write_bytes(b"GIF89a but not really"), "not a readable image"),
    (lambda p: p.write_bytes(huge_jpeg(9000, 9000)), r"9000x9000 = 81 Mpx, over the 67 Mpx limit"),
], ids=["zero bytes", "truncated", "not an image", "huge"])
def test_prepare_strict_bad_image_is_an_error_naming_the_image(ray_local, tmp_path, bad, pattern):
    fx = make_celeba(tmp_path / "celeba")
    bad(fx.image_path("000010.jpg"))
    out = tmp_path / "out"
    msg = _raises_at(lambda: celeba.prepare_celeba(str(fx.root), str(out), image_size=16, chunk_size=4),
                     fx.image_path("000010.jpg"), None, pattern)
    assert f"{fx.paths['attr']}, line 12" in msg and "--allow-partial" in msg
    assert not (out / "dataset.json").exists()


def test_strict_missing_image_fails_before_any_image_work(tmp_path):
    fx = make_celeba(tmp_path / "celeba")
    fx.image_path("000008.jpg").unlink()
    out = tmp_path / "out"
    msg = _raises_at(lambda: celeba.prepare_celeba(str(fx.root), str(out)), fx.image_path("000008.jpg"), None,
                     "image file not found")
    assert f"{fx.paths['attr']}, line 10" in msg
    assert not out.exists()


def test_out_folder_that_is_not_a_data_set_is_refused(tmp_path):
    fx = make_celeba(tmp_path / "celeba")
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    _raises_at(lambda: celeba.prepare_celeba(str(fx.root), str(out)), out, None, "not a prepared data set")
    assert (out / "manifest.json").read_text() == "{}"


def test_shard_write_failure_is_an_error_naming_the_folder(ray_local, tmp_path):
    fx = make_celeba(tmp_path / "celeba", n=6)
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset.json").write_text("{}")  # a previous data set ...
    (out / "train").write_text("in the way")  # ... whose train/ is a file: shards cannot go there
    _raises_at(lambda: celeba.prepare_celeba(str(fx.root), str(out), image_size=16), out / "train", None,
                     "writing shard 0 failed")
    assert not (out / "dataset.json").exists()


# --------------------------------------------------------------------------- --split-fraction


def test_split_by_id_depends_on_the_id_alone():
    ids = [f"{i:06d}.jpg" for i in range(1, 2001)]
    splits = dict(zip(ids, celeba.split_by_id(ids, (0.8, 0.1, 0.1))))
    # pinned: a data set prepared today is split the same way by any later version
    assert [splits[s] for s in ids[:12]] == ["train"] * 7 + ["val"] + ["train"] * 3 + ["val"]
    counts = {s: list(splits.values()).count(s) for s in shards.SPLITS}
    assert counts == {"train": 1630, "val": 180, "test": 190}  # every split, in about its share
    shuffled = list(np.random.default_rng(0).permutation(ids))
    assert dict(zip(shuffled, celeba.split_by_id(shuffled, (0.8, 0.1, 0.1)))) == splits  # row order: no matter
    some = ids[::7]
    assert dict(zip(some, celeba.split_by_id(some, (0.8, 0.1, 0.1)))) == {s: splits[s] for s in some}  # nor other images
    assert set(celeba.split_by_id(ids, (0.5, 0.25, 0.25))) == set(shards.SPLITS)


def test_split_fraction_replaces_the_partition_file_whatever_the_row_order(tmp_path):
    fx = make_celeba(tmp_path, n=40, layout="csv")
    fx.paths["partition"].unlink()
    with pytest.raises(celeba.CelebAError, match="the partition file"):
        celeba.find_files(str(fx.root), aligned=True)
    plan = celeba.load_annotations(celeba.find_files(str(fx.root), aligned=True, need_partition=False),
                              split_fraction=(0.8, 0.1, 0.1))
    assert plan.ids == fx.ids and list(plan.splits) == list(celeba.split_by_id(fx.ids, (0.8, 0.1, 0.1)))
    assert {s: list(plan.splits).count(s) for s in shards.SPLITS} == {"train": 33, "val": 5, "test": 2}
    fx.rewrite("attr", lambda ls: ls[:1] + [line for line in ls[1:] if line][::-1])  # the same rows, last first
    assert fx.lines("attr")[1].startswith("000040.jpg,")
    reordered = celeba.load_annotations(celeba.find_files(str(fx.root), aligned=True, need_partition=False),
                                   split_fraction=(0.8, 0.1, 0.1))
    assert dict(zip(reordered.ids, reordered.splits)) == dict(zip(plan.ids, plan.splits))


def test_prepare_with_split_fraction_records_it_in_dataset_json(ray_local, tmp_path):
    fx = make_celeba(tmp_path / "celeba", n=40, layout="csv")  # its partition file is there, and not read
    out = tmp_path / "out"
    said = []
    info = celeba.prepare_celeba(str(fx.root), str(out), aligned=True, image_size=8, split_fraction="0.8,0.1,0.1",
                            progress=said.append)
    assert f"--split-fraction: splitting by image id; {fx.paths['partition']} is not read" in said
    assert info.num_rows == {"train": 33, "val": 5, "test": 2}
    recorded = json.loads((out / "dataset.json").read_text())["source"]
    assert recorded["split"] == {"by": "image id", "split_fraction": {"train": 0.8, "val": 0.1, "test": 0.1},
                                 "rule": celeba.SPLIT_RULE}
    assert recorded["files"]["partition"] is None
    _, rows = _read_rows(out)
    expected = dict(zip(fx.ids, celeba.split_by_id(fx.ids, (0.8, 0.1, 0.1))))
    assert {s: r["split"] for s, r in rows.items()} == expected
    assert not any(m.startswith("warning:") for m in said)
    official = celeba.prepare_celeba(str(fx.root), str(tmp_path / "official"), aligned=True, image_size=8)
    assert official.source["split"] == {"by": "partition file"}
    assert official.source["files"]["partition"] == str(fx.paths["partition"])


@pytest.mark.parametrize("value", ["0.8,0.2", "0.8,0.1,0.2", "0.9,0.1,0", "0.8,0.1,-0.1,0.2", "a,b,c", "nan,0.5,0.5"])
def test_bad_split_fraction_exits_2_naming_it(tmp_path, capsys, value):
    fx = make_celeba(tmp_path / "celeba", n=3)
    rc = cli.main(["prepare-celeba", "--root", str(fx.root), "--out", str(tmp_path / "out"), "--split-fraction", value])
    err = capsys.readouterr().err
    assert rc == 2 and f"--split-fraction {value}: expected three shares train,val,test" in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_relative_paths_are_made_absolute_for_the_tasks(ray_local, tmp_path, monkeypatch):
    make_celeba(tmp_path / "celeba", n=3)
    monkeypatch.chdir(tmp_path)
    info = celeba.prepare_celeba("celeba", "out", aligned=True, image_size=8)
    assert info.source["root"] == str(tmp_path / "celeba")
    assert sum(info.num_rows.values()) == 3 and (tmp_path / "out" / "dataset.json").exists()


def test_cli_prints_the_error_and_exits_2(tmp_path, capsys):
    fx = make_celeba(tmp_path / "celeba")
    fx.set_line("attr", 6, fx.lines("attr")[5][:-2] + " 2")
    rc = cli.main(["prepare-celeba", "--root", str(fx.root), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{fx.paths['attr']}, line 6:" in err and "Traceback" not in err
    assert cli.main(["prepare-celeba", "--root", str(fx.root), "--out", str(tmp_path / "o"), "--margin", "-1"]) == 2
