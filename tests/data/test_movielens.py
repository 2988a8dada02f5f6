"""MovieLens adapters: the three layouts converted exactly, bad input named precisely."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.sources.movielens import (
    ML100K_GENRES,
    convert_movielens,
    detect_format,
    load_movielens,
)
from recsys.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _frame(columns: dict[str, tuple[str, list]]) -> pd.DataFrame:
    """Expected frame from {name: (dtype, values)}."""
    return pd.DataFrame(
        {name: pd.array(values, dtype=dtype) for name, (dtype, values) in columns.items()}
    )


def _interactions(users, items, timestamps, ratings) -> pd.DataFrame:
    return _frame(
        {
            "USER_ID": ("str", users),
            "ITEM_ID": ("str", items),
            "TIMESTAMP": ("int64", timestamps),
            "EVENT_TYPE": ("str", ["rating"] * len(users)),
            "EVENT_VALUE": ("float64", ratings),
        }
    )


# --- fixtures: one tiny directory per layout --------------------------------------------------


@pytest.fixture
def latest_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    # Not in time order: the loader must keep file order.
    _write(
        d / "ratings.csv",
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,964982703\n"
        "1,3,3.5,964981247\n"
        "2,1,5.0,1445714994\n"
        "2,4,0.5,1445715000\n",
    )
    _write(
        d / "movies.csv",
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '3,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama\n'
        "4,Hyena Road,(no genres listed)\n"
        "5,Death Note: Desu nôto (2006–2007),Anime \n",
    )
    _write(
        d / "tags.csv",
        "userId,movieId,tag,timestamp\n"
        "2,1,Pixar,1445714994\n"
        "3,1,fun,1445714995\n"
        "4,1,pixar,1445714996\n"
        '2,4,"war, Canada",1445714997\n',
    )
    return d


@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-1m"
    d.mkdir()
    _write(
        d / "ratings.dat",
        "1::1193::5::978300760\n1::661::3::978302109\n2::73::4::978298413\n",
        "latin-1",
    )
    _write(
        d / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "73::Misérables, Les (1995)::Drama|Musical\n"
        "9999::Star Wars: Untitled::(no genres listed)\n",
        "latin-1",
    )
    _write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n", "latin-1")
    return d


def _u_item_line(movie_id: int, title: str, genres: list[str]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
    return f"{movie_id}|{title}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|{flags}\n"


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-100k"
    d.mkdir()
    _write(d / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t1366\t1\t878887116\n")
    _write(
        d / "u.item",
        _u_item_line(242, "Kolya (1996)", ["Comedy"])
        + _u_item_line(302, "L.A. Confidential (1997)", ["Crime", "Film-Noir", "Thriller"])
        + _u_item_line(1366, "Á köldum klaka (Cold Fever) (1994)", ["Children's", "Comedy"])
        + _u_item_line(267, "unknown", ["unknown"]),
        "latin-1",
    )
    _write(d / "u.user", "196|49|M|writer|55105\n186|39|F|executive|00000\n", "latin-1")
    return d


# --- the three layouts ---------------------------------------------------------------------


def test_detect_format(latest_dir: Path, ml1m_dir: Path, ml100k_dir: Path) -> None:
    assert detect_format(latest_dir) == "latest"
    assert detect_format(str(ml1m_dir)) == "1m"
    assert detect_format(ml100k_dir) == "100k"


def test_latest_exact(latest_dir: Path) -> None:
    data = load_movielens(latest_dir)
    pd.testing.assert_frame_equal(
        data.interactions,
        _interactions(
            ["1", "1", "2", "2"],
            ["1", "3", "1", "4"],
            [964982703, 964981247, 1445714994, 1445715000],
            [4.0, 3.5, 5.0, 0.5],
        ),
    )
    expected_items = _frame(
        {
            "ITEM_ID": ("str", ["1", "3", "4", "5"]),
            "TITLE": (
                "str",
                [
                    "Toy Story",
                    "City of Lost Children, The (Cité des enfants perdus, La)",
                    "Hyena Road",
                    "Death Note: Desu nôto (2006–2007)",
                ],
            ),
            "YEAR": ("Int64", [1995, 1995, None, None]),
            "GENRES": (
                "str",
                ["Adventure|Animation|Children|Comedy|Fantasy", "Adventure|Drama", "", "Anime"],
            ),
            "TAGS": ("str", ["pixar | fun", "", "war, canada", ""]),
        }
    )
    pd.testing.assert_frame_equal(data.items, expected_items)
    assert data.users is None


def test_latest_without_tags_file(latest_dir: Path) -> None:
    (latest_dir / "tags.csv").unlink()
    items = load_movielens(latest_dir).items
    assert items["TAGS"].tolist() == ["", "", "", ""]


def test_1m_exact(ml1m_dir: Path) -> None:
    data = load_movielens(ml1m_dir)
    pd.testing.assert_frame_equal(
        data.interactions,
        _interactions(
            ["1", "1", "2"],
            ["1193", "661", "73"],
            [978300760, 978302109, 978298413],
            [5.0, 3.0, 4.0],
        ),
    )
    expected_items = _frame(
        {
            "ITEM_ID": ("str", ["1193", "661", "73", "9999"]),
            "TITLE": (
                "str",
                [
                    "One Flew Over the Cuckoo's Nest",
                    "James and the Giant Peach",
                    "Misérables, Les",
                    "Star Wars: Untitled",
                ],
            ),
            "YEAR": ("Int64", [1975, 1996, 1995, None]),
            "GENRES": ("str", ["Drama", "Animation|Children|Musical", "Drama|Musical", ""]),
        }
    )
    pd.testing.assert_frame_equal(data.items, expected_items)
    expected_users = _frame(
        {
            "USER_ID": ("str", ["1", "2"]),
            "GENDER": ("str", ["F", "M"]),
            "AGE": ("int64", [1, 56]),
            "OCCUPATION": ("str", ["10", "16"]),
            "ZIP": ("str", ["48067", "70072"]),
        }
    )
    pd.testing.assert_frame_equal(data.users, expected_users)


def test_100k_exact(ml100k_dir: Path) -> None:
    data = load_movielens(ml100k_dir)
    pd.testing.assert_frame_equal(
        data.interactions,
        _interactions(
            ["196", "186", "22"],
            ["242", "302", "1366"],
            [881250949, 891717742, 878887116],
            [3.0, 3.0, 1.0],
        ),
    )
    expected_items = _frame(
        {
            "ITEM_ID": ("str", ["242", "302", "1366", "267"]),
            "TITLE": (
                "str",
                ["Kolya", "L.A. Confidential", "Á köldum klaka (Cold Fever)", "unknown"],
            ),
            "YEAR": ("Int64", [1996, 1997, 1994, None]),
            "GENRES": ("str", ["Comedy", "Crime|Film-Noir|Thriller", "Children|Comedy", ""]),
        }
    )
    pd.testing.assert_frame_equal(data.items, expected_items)
    expected_users = _frame(
        {
            "USER_ID": ("str", ["196", "186"]),
            "AGE": ("int64", [49, 39]),
            "GENDER": ("str", ["M", "F"]),
            "OCCUPATION": ("str", ["writer", "executive"]),
            "ZIP": ("str", ["55105", "00000"]),
        }
    )
    pd.testing.assert_frame_equal(data.users, expected_users)


def test_users_file_is_optional(ml1m_dir: Path, ml100k_dir: Path) -> None:
    (ml1m_dir / "users.dat").unlink()
    (ml100k_dir / "u.user").unlink()
    assert load_movielens(ml1m_dir).users is None
    assert load_movielens(ml100k_dir).users is None


def test_non_integer_ids_stay_strings(latest_dir: Path) -> None:
    _write(
        latest_dir / "ratings.csv", "userId,movieId,rating,timestamp\nu1,007,4.0,10\nNA,3,2.0,20\n"
    )
    inter = load_movielens(latest_dir).interactions
    assert inter["USER_ID"].tolist() == ["u1", "NA"]
    assert inter["ITEM_ID"].tolist() == ["007", "3"]


def test_crlf_and_blank_lines(latest_dir: Path) -> None:
    _write(
        latest_dir / "ratings.csv",
        "userId,movieId,rating,timestamp\r\n1,1,4.0,10\r\n\r\n2,3,2.0,20\r\n",
    )
    inter = load_movielens(latest_dir).interactions
    assert inter["TIMESTAMP"].tolist() == [10, 20]


def test_convert_writes_csvs(ml1m_dir: Path, tmp_path: Path) -> None:
    paths = convert_movielens(ml1m_dir, tmp_path / "out")
    assert set(paths) == {"interactions", "items", "users"}
    inter = pd.read_csv(paths["interactions"], dtype=str)
    assert list(inter.columns) == ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"]
    assert inter.iloc[0].tolist() == ["1", "1193", "978300760", "rating", "5.0"]
    items = pd.read_csv(paths["items"], dtype=str, keep_default_na=False, encoding="utf-8")
    assert items.loc[2, "TITLE"] == "Misérables, Les"
    assert items.loc[3, "YEAR"] == ""


def test_explicit_format(latest_dir: Path, ml1m_dir: Path) -> None:
    assert len(load_movielens(ml1m_dir, fmt="1m").interactions) == 3
    with pytest.raises(DataError, match="ratings.dat"):
        load_movielens(latest_dir, fmt="1m")
    with pytest.raises(ConfigError, match="unknown MovieLens format"):
        load_movielens(latest_dir, fmt="20m")


# --- bad input -----------------------------------------------------------------------------


def test_non_numeric_timestamp_names_file_row_column(latest_dir: Path) -> None:
    _write(
        latest_dir / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,yesterday\n",
    )
    with pytest.raises(DataError) as info:
        load_movielens(latest_dir)
    message = str(info.value)
    assert "ratings.csv" in message and "row 3" in message and "column timestamp" in message
    assert (info.value.row, info.value.column) == (3, "timestamp")


def test_blank_lines_count_in_row_numbers(latest_dir: Path) -> None:
    _write(latest_dir / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n\n1,3,x,20\n")
    with pytest.raises(DataError) as info:
        load_movielens(latest_dir)
    assert (info.value.row, info.value.column) == (4, "rating")


def test_non_numeric_rating_headerless(ml100k_dir: Path) -> None:
    _write(ml100k_dir / "u.data", "196\t242\t3\t881250949\n186\t302\tgood\t891717742\n")
    with pytest.raises(DataError) as info:
        load_movielens(ml100k_dir)
    assert "u.data" in str(info.value) and "row 2" in str(info.value)
    assert info.value.column == "rating"


def test_too_few_fields(ml1m_dir: Path) -> None:
    _write(ml1m_dir / "ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    with pytest.raises(DataError) as info:
        load_movielens(ml1m_dir)
    assert "ratings.dat" in str(info.value)
    assert (info.value.row, info.value.column) == (2, "timestamp")
    assert "expected 4 fields, found 3" in str(info.value)


@pytest.mark.parametrize("bad_line", [2, 3])
def test_too_many_fields(latest_dir: Path, bad_line: int) -> None:
    lines = ["userId,movieId,rating,timestamp", "1,1,4.0,10", "1,3,3.5,20", "2,1,5.0,30"]
    lines[bad_line - 1] += ",99"
    _write(latest_dir / "ratings.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_movielens(latest_dir)
    assert info.value.row == bad_line
    assert "expected 4 fields, found 5" in str(info.value)


def test_empty_id(ml100k_dir: Path) -> None:
    _write(ml100k_dir / "u.data", "196\t242\t3\t881250949\n\t302\t3\t891717742\n")
    with pytest.raises(DataError) as info:
        load_movielens(ml100k_dir)
    assert (info.value.row, info.value.column) == (2, "user_id")


@pytest.mark.parametrize("content", ["", "userId,movieId,rating,timestamp\n"])
def test_empty_ratings_file(latest_dir: Path, content: str) -> None:
    _write(latest_dir / "ratings.csv", content)
    with pytest.raises(DataError, match="empty") as info:
        load_movielens(latest_dir)
    assert "ratings.csv" in str(info.value)


def test_empty_dat_file(ml1m_dir: Path) -> None:
    _write(ml1m_dir / "ratings.dat", "")
    with pytest.raises(DataError, match="empty"):
        load_movielens(ml1m_dir)


def test_missing_header_column(latest_dir: Path) -> None:
    _write(latest_dir / "ratings.csv", "userId,movieId,rating\n1,1,4.0\n")
    with pytest.raises(DataError, match="timestamp") as info:
        load_movielens(latest_dir)
    assert info.value.row == 1


def test_unknown_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_movielens(tmp_path / "nowhere")
    (tmp_path / "other").mkdir()
    _write(tmp_path / "other" / "ratings.txt", "1,2,3,4\n")
    with pytest.raises(DataError) as info:
        detect_format(tmp_path / "other")
    message = str(info.value)
    assert str(tmp_path / "other") in message
    for name in ("ratings.csv", "movies.csv", "ratings.dat", "users.dat", "u.data", "u.item"):
        assert name in message


# --- size and real data --------------------------------------------------------------------


@pytest.mark.slow
def test_1m_dat_reading_is_fast(tmp_path: Path) -> None:
    """The ``::`` files must not go through pandas' slow Python engine."""
    n = 1_000_000
    rng = np.random.default_rng(0)
    columns = [rng.integers(1, 6041, n), rng.integers(1, 3953, n), rng.integers(1, 6, n)]
    columns.append(rng.integers(956703932, 1046454590, n))
    lines = pd.Series(columns[0].astype(str)).str.cat(
        [pd.Series(c.astype(str)) for c in columns[1:]], sep="::"
    )
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n", encoding="latin-1")
    began = time.perf_counter()
    data = load_movielens(tmp_path)
    elapsed = time.perf_counter() - began
    assert len(data.interactions) == n
    assert data.interactions["TIMESTAMP"].tolist()[-1] == int(columns[3][-1])
    assert elapsed < 15, f"reading 1M :: lines took {elapsed:.1f}s"


def _ml_latest_small() -> Path | None:
    candidates = [
        os.environ.get("RECSYS_ML_LATEST_SMALL"),
        REPO / "data" / "ml-latest-small",
        "/work/shared/data/movielens/ml-latest-small",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "ratings.csv").is_file():
            return Path(candidate)
    return None


def test_real_ml_latest_small() -> None:
    path = _ml_latest_small()
    if path is None:
        pytest.skip(
            "ml-latest-small not found (set RECSYS_ML_LATEST_SMALL or put it in data/ml-latest-small)"
        )
    data = load_movielens(path)
    assert len(data.interactions) == 100836
    assert len(data.items) == 9742
    assert data.interactions["USER_ID"].nunique() == 610
    assert data.users is None
    assert data.interactions["TIMESTAMP"].dtype == "int64"
    assert data.items["YEAR"].dtype == "Int64"
    toy_story = data.items.iloc[0]
    assert (toy_story["TITLE"], toy_story["YEAR"]) == ("Toy Story", 1995)
