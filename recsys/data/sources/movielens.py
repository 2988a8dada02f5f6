"""MovieLens → Personalize-style data: ml-latest / ml-25m CSVs, ml-1m ``::`` files, ml-100k.

Ratings become interactions (EVENT_TYPE ``rating``, EVENT_VALUE the rating, source file order),
movies become items (TITLE without the year, YEAR, ``|``-joined GENRES, and TAGS text for the
CSV format), and the 1m / 100k user files become users. Reading is vectorised pandas (ml-25m has
25M ratings); only when the fast read fails is the file re-scanned, in chunks, to name the first
bad line and column in a :class:`~recsys.errors.DataError`.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from recsys.data.sources.base import PersonalizeData
from recsys.errors import ConfigError, DataError

FORMATS = ("latest", "1m", "100k")

# Per format: the files that must exist, then optional ones (used when present).
_REQUIRED = {
    "latest": ("ratings.csv", "movies.csv"),
    "1m": ("ratings.dat", "movies.dat"),
    "100k": ("u.data", "u.item"),
}
_OPTIONAL = {"latest": ("tags.csv",), "1m": ("users.dat",), "100k": ("u.user",)}

# The 19 genre flag columns of ml-100k's u.item, in file order.
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

# Column kinds of the strict reader: "id" is a non-empty string, "text" any string.
_DTYPES = {"id": "str", "text": "str", "int": "int64", "float": "float64"}  # by kind
_EXTRA = "__extra__"  # catches a surplus field, which pandas would otherwise drop silently
_INT_RE = r"^\s*[+-]?\d+\s*$"
_TITLE_YEAR_RE = r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$"
_SCAN_CHUNK = 200_000  # lines per chunk when re-scanning a file for its first bad line

_RATINGS_COLUMNS = {"user_id": "id", "movie_id": "id", "rating": "float", "timestamp": "int"}


def detect_format(data_dir: str | Path) -> str:
    """Say which MovieLens layout ``data_dir`` holds: ``"latest"``, ``"1m"`` or ``"100k"``."""
    directory = Path(data_dir)
    if not directory.is_dir():
        raise DataError(f"MovieLens directory {directory} does not exist or is not a directory")
    for fmt in FORMATS:
        if all((directory / name).is_file() for name in _REQUIRED[fmt]):
            return fmt
    looked_for = "; ".join(
        f"{fmt}: {' + '.join(_REQUIRED[fmt])}"
        + (f" (optional {', '.join(_OPTIONAL[fmt])})" if _OPTIONAL[fmt] else "")
        for fmt in FORMATS
    )
    raise DataError(f"no MovieLens files found in {directory}; looked for {looked_for}")


def load_movielens(data_dir: str | Path, fmt: str | None = None) -> PersonalizeData:
    """Read a MovieLens directory (format detected unless ``fmt`` is given) into frames."""
    directory = Path(data_dir)
    if fmt is None:
        fmt = detect_format(directory)
    elif fmt not in FORMATS:
        raise ConfigError(f"unknown MovieLens format {fmt!r}; expected one of {', '.join(FORMATS)}")
    else:
        missing = [name for name in _REQUIRED[fmt] if not (directory / name).is_file()]
        if missing:
            raise DataError(
                f"MovieLens {fmt} directory {directory} lacks {', '.join(missing)}"
                f" (needs {' + '.join(_REQUIRED[fmt])})"
            )
    loader = {"latest": _load_latest, "1m": _load_1m, "100k": _load_100k}[fmt]
    return loader(directory)


def convert_movielens(
    data_dir: str | Path, out_dir: str | Path, fmt: str | None = None
) -> dict[str, Path]:
    """Load a MovieLens directory and write interactions/items[/users].csv under ``out_dir``."""
    return load_movielens(data_dir, fmt).write_csvs(out_dir)


# --- the three layouts ---------------------------------------------------------------------


def _load_latest(directory: Path) -> PersonalizeData:
    """ml-latest(-small) / ml-20m / ml-25m: UTF-8 CSVs with a header row."""
    ratings = _read_table(
        directory / "ratings.csv",
        {"userId": "id", "movieId": "id", "rating": "float", "timestamp": "int"},
        sep=",",
        header=True,
        encoding="utf-8",
    )
    interactions = _interactions(ratings, "userId", "movieId", "rating", "timestamp")

    movies = _read_quoted_csv(directory / "movies.csv", ("movieId", "title", "genres"))
    items = _items(movies["movieId"], movies["title"], movies["genres"])
    tags_path = directory / "tags.csv"
    items["TAGS"] = pd.Series("", index=items.index, dtype="str")
    if tags_path.is_file():
        tags = items["ITEM_ID"].map(_tags_text(tags_path))
        items["TAGS"] = tags.where(tags.notna(), "").astype("str")
    return PersonalizeData(interactions=interactions, items=items, users=None)


def _load_1m(directory: Path) -> PersonalizeData:
    """ml-1m (and ml-10m): Latin-1 ``::``-separated files without a header."""
    ratings = _read_dat(directory / "ratings.dat", _RATINGS_COLUMNS)
    interactions = _interactions(ratings, "user_id", "movie_id", "rating", "timestamp")

    movies = _read_dat(
        directory / "movies.dat", {"movie_id": "id", "title": "text", "genres": "text"}
    )
    items = _items(movies["movie_id"], movies["title"], movies["genres"])

    users = None
    users_path = directory / "users.dat"
    if users_path.is_file():
        raw = _read_dat(
            users_path,
            {"user_id": "id", "gender": "text", "age": "int", "occupation": "id", "zip": "text"},
        )
        users = pd.DataFrame(
            {
                "USER_ID": raw["user_id"],
                "GENDER": raw["gender"],
                "AGE": raw["age"],
                "OCCUPATION": raw["occupation"],
                "ZIP": raw["zip"],
            }
        )
    return PersonalizeData(interactions=interactions, items=items, users=users)


def _load_100k(directory: Path) -> PersonalizeData:
    """ml-100k: tab-separated u.data, Latin-1 ``|``-separated u.item (genre flags) and u.user."""
    ratings = _read_table(
        directory / "u.data",
        {"user_id": "id", "item_id": "id", "rating": "float", "timestamp": "int"},
        sep="\t",
        header=False,
        encoding="latin-1",
        quoting=csv.QUOTE_NONE,
    )
    interactions = _interactions(ratings, "user_id", "item_id", "rating", "timestamp")

    item_columns = {
        "movie_id": "id",
        "title": "text",
        "release_date": "text",
        "video_release_date": "text",
        "imdb_url": "text",
    } | dict.fromkeys(ML100K_GENRES, "int")
    raw = _read_table(
        directory / "u.item",
        item_columns,
        sep="|",
        header=False,
        encoding="latin-1",
        quoting=csv.QUOTE_NONE,
    )
    # Flags → "|"-joined names: multiply each 0/1 flag by "Name|" and concatenate per row.
    kept = [g for g in ML100K_GENRES if g != "unknown"]
    names = np.array([g.replace("Children's", "Children") + "|" for g in kept], dtype=object)
    flags = raw[kept].to_numpy() != 0
    joined = (flags * names).sum(axis=1) if len(raw) else np.array([], dtype=object)
    genres = pd.Series(joined, index=raw.index, dtype="str").str.rstrip("|")
    items = _items(raw["movie_id"], raw["title"], genres)

    users = None
    users_path = directory / "u.user"
    if users_path.is_file():
        user_raw = _read_table(
            users_path,
            {"user_id": "id", "age": "int", "gender": "text", "occupation": "text", "zip": "text"},
            sep="|",
            header=False,
            encoding="latin-1",
            quoting=csv.QUOTE_NONE,
        )
        users = pd.DataFrame(
            {
                "USER_ID": user_raw["user_id"],
                "AGE": user_raw["age"],
                "GENDER": user_raw["gender"],
                "OCCUPATION": user_raw["occupation"],
                "ZIP": user_raw["zip"],
            }
        )
    return PersonalizeData(interactions=interactions, items=items, users=users)


# --- frame builders ------------------------------------------------------------------------


def _interactions(
    ratings: pd.DataFrame, user: str, item: str, rating: str, timestamp: str
) -> pd.DataFrame:
    """Ratings (source order kept) → USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE, EVENT_VALUE."""
    out = ratings.rename(
        columns={user: "USER_ID", item: "ITEM_ID", timestamp: "TIMESTAMP", rating: "EVENT_VALUE"}
    )
    out["EVENT_TYPE"] = pd.Series("rating", index=out.index, dtype="str")
    return out[["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"]]


def _items(ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    """Movie rows → ITEM_ID, TITLE (year removed), YEAR (nullable Int64), GENRES."""
    titles = titles.astype("str").str.strip()
    parts = titles.str.extract(_TITLE_YEAR_RE)
    has_year = parts["year"].notna()
    title = titles.where(~has_year, parts["title"]).astype("str")
    year = pd.to_numeric(parts["year"]).astype("Int64")
    return pd.DataFrame(
        {
            "ITEM_ID": ids.astype("str").to_numpy(),
            "TITLE": title.to_numpy(),
            "YEAR": year.to_numpy(),
            "GENRES": _normalise_genres(genres).to_numpy(),
        }
    ).astype({"ITEM_ID": "str", "TITLE": "str", "YEAR": "Int64", "GENRES": "str"})


def _normalise_genres(genres: pd.Series) -> pd.Series:
    """Same genre vocabulary across formats: "(no genres listed)" → "", Children's → Children."""
    g = genres.astype("str").fillna("").str.strip()
    g = g.str.replace("Children's", "Children", regex=False)
    return g.where(g != "(no genres listed)", "")


def _tags_text(path: Path) -> pd.Series:
    """tags.csv → Series movieId → "tag a | tag b" (lower-cased, first-seen order, no repeats)."""
    tags = _read_quoted_csv(path, ("movieId", "tag"))
    tags = pd.DataFrame({"movieId": tags["movieId"], "tag": tags["tag"].str.strip().str.lower()})
    tags = tags[tags["tag"] != ""].drop_duplicates()
    return tags.groupby("movieId", sort=False)["tag"].agg(" | ".join)


# --- strict readers ------------------------------------------------------------------------


def _read_dat(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """Read an ml-1m ``::`` file: decode, turn ``::`` into tabs, parse with the C engine.

    ``sep="::"`` would need pandas' slow Python engine; titles contain single ``:`` so the
    file cannot be split on ``:`` either. One text replace keeps it vectorised (~1 s / 1M rows).
    """
    try:
        text = path.read_text(encoding="latin-1").replace("::", "\t")
    except OSError as exc:
        raise DataError(f"cannot read: {exc}", file=str(path)) from exc
    return _read_table(
        path, columns, sep="\t", header=False, encoding="latin-1", quoting=csv.QUOTE_NONE, text=text
    )


def _read_table(
    path: Path,
    columns: dict[str, str],
    *,
    sep: str,
    header: bool,
    encoding: str,
    quoting: int = csv.QUOTE_MINIMAL,
    text: str | None = None,
) -> pd.DataFrame:
    """Read a delimited file whose every line must have exactly ``columns`` (name → kind).

    With ``header`` the first line names the columns (``columns`` must be among them; others are
    kept as strings). ``text``, when given, is the already-decoded content of ``path`` (with
    ``sep`` as separator). Any bad line (wrong field count, unparsable or empty value) raises
    DataError naming the file, 1-based line and column.
    """
    kinds = dict(columns)
    if header:
        names = _header_names(path, sep, encoding, text)
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(
                f"missing column(s) {', '.join(missing)} in header {sep.join(names)!r}",
                file=str(path),
                row=1,
            )
        kinds = {name: columns.get(name, "text") for name in names}
    options = {"sep": sep, "skiprows": 1 if header else 0, "encoding": encoding, "quoting": quoting}
    try:
        # MovieLens ids are integers: parsing them as int64 then converting is ~2x faster than
        # parsing strings. Ids that are not plain integers fall back to the string read.
        df = _parse(io.StringIO(text) if text is not None else path, kinds, "int64", **options)
    except pd.errors.EmptyDataError:
        df = None
    except (ValueError, OverflowError):
        try:
            df = _parse(io.StringIO(text) if text is not None else path, kinds, "str", **options)
        except (ValueError, OverflowError) as exc:  # pandas' ParserError is a ValueError
            raise _locate_error(path, kinds, options, text, str(exc)) from exc
    if df is None or df.empty:
        raise DataError("file is empty (no data rows)", file=str(path))
    if not _clean(df, kinds):
        raise _locate_error(path, kinds, options, text, "bad value")
    ids = [name for name, kind in kinds.items() if kind == "id" and df[name].dtype != "str"]
    return df.drop(columns=_EXTRA).astype(dict.fromkeys(ids, "str"))


def _parse(
    source: Path | io.StringIO,
    kinds: dict[str, str],
    id_dtype: str,
    *,
    sep: str,
    skiprows: int,
    encoding: str,
    quoting: int,
) -> pd.DataFrame:
    """One strict, vectorised read: typed columns plus ``_EXTRA`` to catch a surplus field."""
    dtypes = {name: id_dtype if kind == "id" else _DTYPES[kind] for name, kind in kinds.items()}
    return pd.read_csv(
        source,
        sep=sep,
        header=None,
        skiprows=skiprows,
        names=[*kinds, _EXTRA],
        dtype=dtypes | {_EXTRA: "str"},
        na_filter=False,  # empty fields stay "" (rejected by the typed parse or _clean)
        index_col=False,
        encoding=encoding,
        quoting=quoting,
        engine="c",
    )


def _clean(df: pd.DataFrame, kinds: dict[str, str]) -> bool:
    """False when a parsed frame hides a bad line: a surplus field or an empty id."""
    if (df[_EXTRA] != "").any():
        return False
    return not any(
        (df[name] == "").any()
        for name, kind in kinds.items()
        if kind == "id" and df[name].dtype == "str"
    )


def _header_names(path: Path, sep: str, encoding: str, text: str | None) -> list[str]:
    """The column names on the first line of a headed file (empty file → empty-file error)."""
    if text is not None:
        first = text.split("\n", 1)[0]
    else:
        with open(path, encoding="utf-8-sig" if encoding == "utf-8" else encoding) as fh:
            first = fh.readline()
    first = first.rstrip("\r\n")
    if not first:
        raise DataError("file is empty (no header row)", file=str(path))
    return next(csv.reader([first], delimiter=sep))


def _locate_error(
    path: Path, kinds: dict[str, str], options: dict, text: str | None, fallback: str
) -> DataError:
    """Re-scan the file for its first bad line; a DataError naming line and column.

    Chunks of lines that the fast parser accepts are skipped; only a failing chunk is checked
    line by line, so locating an error in ml-25m's last line takes seconds, not minutes.
    """
    with _open_lines(path, options["encoding"], text) as fh:
        lines = iter(fh)
        first_line = 1
        for _ in range(options["skiprows"]):  # the header
            next(lines, None)
            first_line += 1
        while chunk := list(itertools.islice(lines, _SCAN_CHUNK)):
            if not _chunk_parses(chunk, kinds, options):
                found = _first_bad_line(chunk, kinds, options["sep"])
                if found is not None:
                    offset, column, message = found
                    return DataError(
                        message, file=str(path), row=first_line + offset, column=column
                    )
            first_line += len(chunk)
    return DataError(f"could not parse: {fallback}", file=str(path))


def _chunk_parses(chunk: list[str], kinds: dict[str, str], options: dict) -> bool:
    """Whether the fast, strict parse accepts these lines."""
    source = io.StringIO("".join(chunk))
    try:
        df = _parse(source, kinds, "str", **(options | {"skiprows": 0}))
    except pd.errors.EmptyDataError:
        return True
    except (ValueError, OverflowError):
        return False
    return _clean(df, kinds)


def _open_lines(path: Path, encoding: str, text: str | None) -> TextIO:
    """A line iterator over the file, or over its already-decoded text."""
    if text is not None:
        return io.StringIO(text, newline="")
    return open(path, encoding=encoding, newline="")  # noqa: SIM115 - caller closes it


def _first_bad_line(chunk: list[str], kinds: dict[str, str], sep: str) -> tuple | None:
    """(offset in chunk, column or None, message) of the first bad line in ``chunk``, if any."""
    lines = pd.Series(chunk, dtype=object).str.rstrip("\r\n")
    # pandas skips blank (or whitespace-only) lines, so they are never errors.
    blank = lines.str.strip(" \t".replace(sep, "")) == ""
    parts = lines.str.split(sep, regex=False)
    counts = parts.str.len()
    n = len(kinds)
    # A trailing separator (one more, empty field) is tolerated, as the fast reader does.
    count_ok = blank | (counts == n) | ((counts == n + 1) & (parts.str[-1] == ""))
    result = None
    pos = _first_true(~count_ok)
    if pos is not None:
        found = int(counts.iloc[pos])
        column = list(kinds)[found] if found < n else None  # the first missing column
        result = (pos, column, f"expected {n} fields, found {found}")
    for j, (name, kind) in enumerate(kinds.items()):
        if kind == "text":
            continue
        values = parts.str[j].fillna("")
        if kind == "int":
            bad = ~values.str.match(_INT_RE)
        elif kind == "float":
            bad = pd.to_numeric(values.str.strip(), errors="coerce").isna()
        else:  # id
            bad = values == ""
        pos = _first_true(bad & ~blank & count_ok)
        if pos is not None and (result is None or pos < result[0]):
            value = values.iloc[pos]
            message = "empty value" if value == "" else f"not a valid {kind}: {value!r}"
            result = (pos, name, message)
    return result


def _first_true(mask: pd.Series) -> int | None:
    """Position of the first True in ``mask``, or None."""
    arr = mask.to_numpy(dtype=bool)
    return int(arr.argmax()) if arr.any() else None


def _read_quoted_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Read a headed UTF-8 CSV with quoted text fields (movies.csv, tags.csv) as strings."""
    try:
        df = pd.read_csv(path, dtype="str", na_filter=False, encoding="utf-8", index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError("file is empty (no header row)", file=str(path)) from None
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        row = int(match.group(1)) if match else None
        raise DataError(f"could not parse: {exc}", file=str(path), row=row) from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}", file=str(path), row=1)
    id_col = required[0]
    empty = (df[id_col] == "").to_numpy()
    if empty.any():
        # Line number assumes no blank lines or multi-line quoted fields above it.
        row = int(empty.argmax()) + 2
        raise DataError("empty id", file=str(path), row=row, column=id_col)
    return df
