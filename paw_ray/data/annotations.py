"""CelebA's annotation files -> arrays: one parser for the official ``.txt`` files and
the ``.csv`` editions, which names the file and the 1-based line of every bad row.

The text files' quirks handled: a first line with the row count (checked against the
rows), a line of column names (checked against the expected names; a permutation is
reordered), none of either in the partition file, runs of spaces, tabs, CRLF or LF
line ends, a UTF-8 byte-order mark, blank lines (ignored: they hold no data).

The CSV variants that circulate are read too: any name for the first (image id)
column when the file names one column more than the expected ones (empty, as
``pandas.DataFrame.to_csv`` writes its index, ``id``, ``image_id``, ``Unnamed: 0``,
...), spaces after the commas, quoted cells (``"000001.jpg","-1"``), and, in every
format, attribute values -1/1, 0/1 or False/True (one encoding per file, told by its
first row with a negative value; returned as -1/1) and partition values 0/1/2 or
train/val/test. Parsing is vectorised with numpy over the whole file; rows are looked
at one by one only to word the message of a row that failed the vectorised checks.
"""

from __future__ import annotations

import posixpath
import re
import warnings
from csv import Error as CSVError
from csv import reader as csv_reader
from dataclasses import dataclass, field

import numpy as np

from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES
from paw_ray.errors import PawRayError

__all__ = [
    "CelebAError",
    "Problem",
    "Annotation",
    "file_name",
    "parse_annotation",
]


class CelebAError(PawRayError, ValueError):
    """CelebA input that cannot be used as it is: the message names the file, the
    line (1-based) where there is one, and the problem."""


# --------------------------------------------------------------------------- annotation kinds


@dataclass(frozen=True)
class _Kind:
    key: str
    stem: str  # file name without extension
    columns: tuple[str, ...]
    allowed: tuple[int, ...] | None  # the values a column may hold (None: any integer)
    allowed_text: str
    header_required: bool  # in a .txt file (a .csv always has one)
    words: tuple[tuple[str, int], ...] = ()  # values that may be written as words (lower case)
    spellings: str = ""  # every way the values may be written, for messages


_KINDS = {
    k.key: k
    for k in (
        _Kind("attr", "list_attr_celeba", tuple(ATTRIBUTES), (-1, 1), "-1 or 1", True,
              (("false", 0), ("true", 1)), "-1/1, 0/1 or False/True"),
        _Kind("bbox", "list_bbox_celeba", ("x_1", "y_1", "width", "height"), None, "", False),
        _Kind("landmarks", "list_landmarks_celeba",
              ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
               "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y"), None, "", False),
        _Kind("partition", "list_eval_partition", ("partition",), (0, 1, 2), "0 (train), 1 (val) or 2 (test)", False,
              (("train", 0), ("val", 1), ("test", 2)), "0/1/2 or train/val/test"),
    )
}

_ID_RE = re.compile(r"[^/\\\s.][^/\\\s]*\.(?:jpe?g|png|bmp|webp|tiff?)", re.IGNORECASE)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_MAX_DIGITS = 9  # values are pixel coordinates or flags: 9 digits is plenty


def _is_image_id(token: str) -> bool:
    return bool(_ID_RE.fullmatch(token))


@dataclass(frozen=True)
class Problem:
    """One bad row (or cross-file mismatch): where, why (a short ``reason`` used to
    count drops), and the full ``detail``."""

    path: str
    line: int
    reason: str
    detail: str
    image_id: str | None = None

    @property
    def message(self) -> str:
        return f"{self.path}, line {self.line}: {self.detail}"

    @property
    def key(self) -> str:
        """The reason a dropped row is counted under: ``<file name>: <reason>``."""
        return f"{file_name(self.path)}: {self.reason}"


@dataclass
class Annotation:
    """One parsed annotation file: its good rows (in file order) and its bad ones."""

    path: str
    kind: str
    columns: list[str]  # in the canonical order of the kind (``values``' columns)
    ids: list[str]  # good rows
    values: np.ndarray  # (len(ids), len(columns)) int64
    lines: np.ndarray  # (len(ids),) 1-based line of each good row
    problems: list[Problem]  # bad rows, by line
    num_rows: int  # data rows in the file, good and bad
    row_lines: np.ndarray  # (num_rows,) line of every data row, in order
    declared_rows: int | None = None  # the count line, if the file has one
    warnings: list[str] = field(default_factory=list)

    def raise_first(self) -> None:
        """Raise the first problem (by line) or warning as a ``CelebAError``."""
        if self.warnings:
            raise CelebAError(self.warnings[0])
        if self.problems:
            p = self.problems[0]
            more = len(self.problems) - 1
            tail = f" ({more} more bad row{'s' if more != 1 else ''} in this file)" if more else ""
            raise CelebAError(p.message + tail)


def file_name(path: str) -> str:
    """The last part of a local path or URI (the name drop counts are keyed by)."""
    return posixpath.basename(path.replace("\\", "/"))


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CelebAError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); is this a CelebA annotation file?"
        ) from None


def _unquote_csv(line: str) -> str:
    """A CSV line with its quoted cells unquoted (``"000001.jpg", "-1"`` -> ``000001.jpg,-1``);
    ``csv.Error`` when its quotes do not parse."""
    return ",".join(next(csv_reader([line.strip()], skipinitialspace=True, strict=True)))


def _header_tokens(line: str, csv: bool) -> list[str]:
    if csv:
        return [t.strip() for t in line.split(",")]
    return line.split()


def _words_to_numbers(rests: list[str], words: dict[str, int]) -> list[str]:
    """Values written as words (``False``/``True``, ``train``/``val``/``test``; any case,
    whole cells only) replaced by their numbers, so that the vectorised scan reads them."""
    joined = "\n".join(rests)
    low = joined.lower()
    if not any(w in low for w in words):  # the official files: one cheap look
        return rests
    cell = re.compile(r"(?<![^\s,])(" + "|".join(words) + r")(?![^\s,])", re.IGNORECASE)
    return cell.sub(lambda m: str(words[m.group(1).lower()]), joined).split("\n")


def _attr_encoding(values: np.ndarray, lines: np.ndarray) -> tuple[tuple[int, int], str]:
    """The attribute file's values: CelebA's -1/1, or 0/1 (also written False/True), told
    by the first row holding -1 or 0; rows that use the other negative are then refused."""
    rows = np.flatnonzero(((values == -1) | (values == 0)).any(axis=1))
    if not rows.size:
        return (-1, 1), "-1 or 1"
    r = int(rows[0])
    negative = -1 if (values[r] == -1).any() else 0
    return (negative, 1), f"{negative} or 1, as on line {int(lines[r])}"


def _check_header(tokens: list[str], kind: _Kind, path: str, line: int) -> np.ndarray | None:
    """The column permutation that brings the file's columns into the kind's order
    (None when they are already in order); a ``CelebAError`` when the names differ."""
    expected = list(kind.columns)
    exp_low = [n.lower() for n in expected]
    names = list(tokens)
    if len(names) == len(expected) + 1 and names[0].lower() not in exp_low:
        names = names[1:]  # the image-id column, whatever its name ("", "id", "Unnamed: 0", ...)
    low = [n.lower() for n in names]
    if low == exp_low:
        return None
    if sorted(low) == sorted(exp_low) and len(set(low)) == len(low):
        return np.array([low.index(n) for n in exp_low])
    missing = [n for n, nl in zip(expected, exp_low) if nl not in low]
    unknown = [n for n in names if n.lower() not in exp_low]
    what = f"{len(names)} column names" if len(names) != len(expected) else "column names"
    detail = f"expected the {len(expected)} column names of {kind.stem} ({' '.join(expected[:6])}{' ...' if len(expected) > 6 else ''}), found {what}"
    if missing:
        detail += f"; missing {missing[:5]}{' ...' if len(missing) > 5 else ''}"
    if unknown:
        detail += f"; unknown {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
    raise CelebAError(f"{path}, line {line}: {detail}")


def _scan_values(rests: list[str], k: int, csv: bool) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised integer parsing of the value part of every row.

    Returns ``(values, bad)``: ``values`` (n, k) int64 (zeros on bad rows) and ``bad``
    (n,) bool, True for rows that do not hold exactly ``k`` well-formed integers
    (``[+-]?[0-9]{1,9}``; in a CSV also exactly ``k - 1`` commas). One pass of numpy
    over the bytes of the whole file: no per-row Python for good rows."""
    n = len(rests)
    values = np.zeros((n, k), dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    if n == 0:
        return values, bad
    joined = "\n".join(rests)
    b = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
    if b.size == 0:
        bad[:] = k > 0
        return values, bad
    row_of = np.cumsum(b == 10, dtype=np.int32)  # row of each byte ("\n" belongs to the next: it is a gap)
    ws = (b == 32) | ((b >= 9) & (b <= 13))  # what both str.split and C's isspace skip
    if csv:
        comma = b == 44
        bad |= np.bincount(row_of[comma], minlength=n) != k - 1
        ws |= comma
    tok = ~ws
    start = tok.copy()
    start[1:] &= ws[:-1]
    end = tok.copy()
    end[:-1] &= ws[1:]
    starts = np.flatnonzero(start)
    trow = row_of[starts]
    bad |= np.bincount(trow, minlength=n) != k
    digit = (b >= 48) & (b <= 57)
    sign = (b == 45) | (b == 43)
    bad[row_of[tok & ~digit & ~sign]] = True
    sp = np.flatnonzero(sign)
    bad[row_of[sp[~start[sp] | end[sp]]]] = True  # a sign must start a token and not be all of it
    tlen = np.flatnonzero(end) + 1 - starts
    bad[trow[tlen - sign[starts] > _MAX_DIGITS]] = True
    good = ~bad
    if not good.any():
        return values, bad
    # Every token of a good row is now [+-]?[0-9]{1,9}: numpy's C parser reads them in one go.
    if bad.any():
        joined = "\n".join(r for r, g in zip(rests, good) if g)
    if csv:
        joined = joined.replace(",", " ")
    tv = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            tv = np.fromstring(joined, dtype=np.int64, sep=" ")
        except (DeprecationWarning, ValueError):
            tv = None
    if tv is None or tv.size != int(good.sum()) * k:  # not expected: the exact, slow way
        tv = np.array([int(t) for t in joined.split()], dtype=np.int64)
    values[good] = tv.reshape(-1, k)
    return values, bad


def _row_detail(rest: str, k: int, csv: bool, columns: list[str]) -> tuple[str, str]:
    """(reason, detail) for a row that failed ``_scan_values`` (slow, exact, per row)."""
    if csv:
        fields = rest.split(",") if rest.strip() else []
        if len(fields) != k:
            return "wrong number of values", f"expected {k} comma-separated values after the image id, found {len(fields)}"
        toks = [f.strip() for f in fields]
        for j, t in enumerate(toks):
            if not t:
                return "not an integer", f"value {j + 1} ({columns[j]}) is empty"
            if len(t.split()) > 1:
                return "not an integer", f"value {j + 1} ({columns[j]}) {t!r} is not an integer"
    else:
        toks = rest.split()
        if len(toks) != k:
            return "wrong number of values", f"expected {k} values after the image id, found {len(toks)}"
    for j, t in enumerate(toks):
        if not _INT_RE.fullmatch(t):
            return "not an integer", f"value {j + 1} ({columns[j]}) {t!r} is not an integer"
        if len(t.lstrip("+-")) > _MAX_DIGITS:
            return "value out of range", f"value {j + 1} ({columns[j]}) {t} is out of range"
    return "not an integer", "holds an unexpected character"


def parse_annotation(path: str, kind: str, *, strict: bool = True, data: bytes | None = None) -> Annotation:
    """Parse one CelebA annotation file (``.txt`` in the official format or ``.csv``).

    ``kind`` is ``"attr"``, ``"bbox"``, ``"landmarks"`` or ``"partition"``. With ``strict``
    the first bad row (or a row count that disagrees) raises ``CelebAError``; without, bad
    rows come back in ``Annotation.problems`` and a count mismatch in
    ``Annotation.warnings``. File-level problems (missing, empty, not text, wrong column
    names) always raise. Attribute values come back as -1/1 whichever encoding the file
    uses; partition values as 0/1/2."""
    if kind not in _KINDS:
        raise ValueError(f"unknown annotation kind {kind!r}; one of {sorted(_KINDS)}")
    K = _KINDS[kind]
    csv = path.lower().endswith(".csv")
    lines, quote_errors = _read_lines(path, K, csv, data)
    start, declared, count_line, perm = _read_head(lines, path, K, csv)
    columns_in_file = list(K.columns) if perm is None else [K.columns[j] for j in np.argsort(perm)]
    row_lines = [j for j in range(start, len(lines)) if lines[j].strip()]
    ids, rests = _split_rows(lines, row_lines, csv)
    n = len(row_lines)
    line_no = np.asarray(row_lines, dtype=np.int64) + 1

    if K.words:
        rests = _words_to_numbers(rests, dict(K.words))
    values, bad = _scan_values(rests, len(K.columns), csv)
    bad_quotes = {r: quote_errors[j] for r, j in enumerate(row_lines) if j in quote_errors}
    bad[list(bad_quotes)] = True
    problems = _row_problems(path, K, ids, rests, line_no, bad, bad_quotes, csv, columns_in_file)
    if perm is not None:
        values = values[:, perm]
    values = _check_values(path, kind, K, ids, values, line_no, bad, problems)
    _check_ids(path, ids, line_no, bad, problems)
    problems.sort(key=lambda p: p.line)
    good = ~bad
    ann = Annotation(
        path=path, kind=kind, columns=list(K.columns),
        ids=[s for s, g in zip(ids, good) if g], values=values[good], lines=line_no[good],
        problems=problems, num_rows=n, row_lines=line_no, declared_rows=declared,
    )
    if declared is not None and declared != n:
        span = f" (lines {int(line_no[0])}-{int(line_no[-1])})" if n else ""
        ann.warnings.append(f"{path}, line {count_line}: the row count says {declared} rows but the file has {n}{span}")
    if strict:
        ann.raise_first()
    return ann


def _read_lines(path: str, K: _Kind, csv: bool, data: bytes | None) -> tuple[list[str], dict[int, str]]:
    """The file's lines (CSV quotes removed) and, per line index, why its quotes do not parse."""
    if data is None:
        try:
            data = storage.read_bytes(path)
        except FileNotFoundError:
            raise CelebAError(f"{path}: file not found") from None
        except IsADirectoryError:
            raise CelebAError(f"{path}: is a folder, expected the {K.stem} file") from None
    text = _decode(data, path)
    if "\n" not in text and "\r" in text:  # old Mac line ends
        text = text.replace("\r", "\n")
    lines = text.split("\n")  # "\r" of CRLF stays at the line end: whitespace to the parser
    quote_errors: dict[int, str] = {}
    if csv and '"' in text:
        for j, line in enumerate(lines):
            if '"' in line:
                try:
                    lines[j] = _unquote_csv(line)
                except CSVError as e:
                    quote_errors[j] = str(e)
    return lines, quote_errors


def _read_head(lines: list[str], path: str, K: _Kind, csv: bool) -> tuple[int, int | None, int, np.ndarray | None]:
    """Where the data rows start, the row count the file declares (official .txt) and its line,
    and the permutation from the header's column order to CelebA's (None: already in order)."""

    def next_nonblank(i: int) -> int:
        while i < len(lines) and not lines[i].strip():
            i += 1
        return i

    i = next_nonblank(0)
    if i == len(lines):
        raise CelebAError(f"{path}: the file is empty")
    declared, count_line = None, 0
    if not csv and re.fullmatch(r"[0-9]+", lines[i].strip()):
        declared, count_line = int(lines[i].strip()), i + 1
        i = next_nonblank(i + 1)
    perm = None
    if i < len(lines):
        toks = _header_tokens(lines[i], csv)
        if toks and not _is_image_id(toks[0]):
            perm = _check_header(toks, K, path, i + 1)
            i += 1
        elif csv or K.header_required:
            want = ("a header row image_id," + ",".join(K.columns[:3]) if csv
                    else f"a line with the {len(K.columns)} column names")
            raise CelebAError(f"{path}, line {i + 1}: expected {want}{' ...' if csv else ''}, found a data row")
    return i, declared, count_line, perm


def _split_rows(lines: list[str], row_lines: list[int], csv: bool) -> tuple[list[str], list[str]]:
    """Each data row's image id and the rest of its line."""
    ids: list[str] = []
    rests: list[str] = []
    for j in row_lines:
        if csv:
            head, _, rest = lines[j].partition(",")
            ids.append(head.strip())
        else:
            parts = lines[j].split(None, 1)
            ids.append(parts[0])
            rest = parts[1] if len(parts) > 1 else ""
        rests.append(rest)
    return ids, rests


def _row_problems(path: str, K: _Kind, ids: list[str], rests: list[str], line_no: np.ndarray, bad: np.ndarray,
                  bad_quotes: dict[int, str], csv: bool, columns_in_file: list[str]) -> list[Problem]:
    """A ``Problem`` for each row whose values did not scan."""
    problems: list[Problem] = []
    for r in np.flatnonzero(bad):
        if r in bad_quotes:
            reason, detail = "quotes do not parse", f"the quotes of this line do not parse ({bad_quotes[r]})"
        else:
            reason, detail = _row_detail(rests[r], len(K.columns), csv, columns_in_file)
        if reason == "not an integer" and K.spellings:
            detail += f" (values may be {K.spellings})"
        iid = ids[r] if _is_image_id(ids[r]) else None
        problems.append(Problem(path, int(line_no[r]), reason, f"{ids[r]}: {detail}", iid))
    return problems


def _check_values(path: str, kind: str, K: _Kind, ids: list[str], values: np.ndarray, line_no: np.ndarray,
                  bad: np.ndarray, problems: list[Problem]) -> np.ndarray:
    """Mark rows with a value outside the kind's allowed set (adding their problems); return
    the values in CelebA's own encoding (attributes as -1/1)."""
    allowed, allowed_text = K.allowed, K.allowed_text
    if kind == "attr":
        allowed, allowed_text = _attr_encoding(values[~bad], line_no[~bad])
    if allowed is not None:
        ok = np.isin(values, allowed)
        for r in np.flatnonzero(~ok.all(axis=1) & ~bad):
            j = int(np.flatnonzero(~ok[r])[0])
            reason = "value outside " + "/".join(str(a) for a in allowed)
            problems.append(Problem(path, int(line_no[r]), reason,
                                    f"{ids[r]}: {K.columns[j]} is {values[r, j]}; must be {allowed_text}", ids[r]))
            bad[r] = True
    return values * 2 - 1 if allowed == (0, 1) else values


def _check_ids(path: str, ids: list[str], line_no: np.ndarray, bad: np.ndarray, problems: list[Problem]) -> None:
    """Mark rows whose id is not an image file name or appears more than once (adding their problems)."""
    id_ok = np.fromiter((bool(_ID_RE.fullmatch(s)) for s in ids), dtype=bool, count=len(ids))
    for r in np.flatnonzero(~id_ok):
        if not bad[r]:
            shown = ids[r] if len(ids[r]) <= 40 else ids[r][:40] + "..."
            problems.append(Problem(path, int(line_no[r]), "not an image file name",
                                    f"{shown!r} is not an image file name (like 000001.jpg)", None))
        bad[r] = True
    first_row: dict[str, int] = {}
    dup_rows: dict[str, list[int]] = {}
    for r, s in enumerate(ids):
        if id_ok[r]:
            f = first_row.setdefault(s, r)
            if f != r:
                dup_rows.setdefault(s, [f]).append(r)
    for s, rs in dup_rows.items():
        where = ", ".join(str(int(line_no[r])) for r in rs)
        for r in rs:
            problems.append(Problem(path, int(line_no[r]), "duplicate image id",
                                    f"image id {s} appears more than once (lines {where})", s))
        bad[rs] = True
