"""A synthetic Personalize-style dataset with the structure recommenders should find.

Items have Zipf-like popularity and 1–3 genres, and arrive over time; each user prefers one or
two genres; every interaction happens after its item exists, and (optionally) records the slate
of items shown with it. Used by tests and benchmarks where MovieLens is too big or too static.
Everything is drawn from one ``numpy.random.default_rng(seed)``, so a seed fixes the dataset.

Two ways out, one generator:

* :func:`generate` returns the dataset as frames (small sizes: tests, ``recsys replay``).
* :func:`write_synthetic` streams it to ``items.csv``, ``users.csv`` and ``interactions.csv``
  with bounded memory, for scale tests (1M items, 1M users, 10M+ interactions)::

      python -m recsys.data.sources.synthetic OUT_DIR --items 1000000 --users 1000000 \\
          --interactions 10000000 [--seed 0]

Both draw the per-item and per-user arrays first (numbers only: genres, prices, arrival
times, popularity, title words, segments, favourite genres, interaction counts: about 60 bytes
per item and per user), then the interactions in blocks of whole users of about
:data:`BLOCK_ROWS` rows, each block from the same generator in turn. So the data depends only
on the seed and the sizes, not on how it is written; with at most ``BLOCK_ROWS`` interactions
there is one block and the data are exactly what this module has always drawn. Interactions are
in time order within a block; :func:`generate` sorts all blocks together, the CSV keeps block
order (the import sorts by TIMESTAMP anyway).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recsys.data.sources.base import PersonalizeData
from recsys.errors import ConfigError

DAY = 86_400
ZIPF_EXPONENT = 1.1  # item popularity ∝ 1 / rank**ZIPF_EXPONENT
AFFINITY = 0.85  # share of a user's interactions drawn from their favourite genres
PURCHASE_RATE = 0.06  # share of interactions that are purchases (the rest are clicks)
OLD_ITEM_SHARE = 0.5  # share of items that already exist at ``start``
SLATE_SIZES = (3, 8)  # an impression shows between 3 and 8 items (inclusive)
SEGMENTS = ("casual", "regular", "power")
SEGMENT_SHARES = (0.5, 0.35, 0.15)
SEGMENT_ACTIVITY = (1.0, 3.0, 8.0)  # relative number of interactions per segment
#: Interactions drawn at a time (whole users; a user with more makes a bigger block). Part of
#: the data's definition: changing it changes what a seed draws above this size.
BLOCK_ROWS = 100_000
#: Items and users formatted and written at a time.
WRITE_ROWS = 200_000

# Title words; each genre gets a theme word so titles carry a little genre signal.
_ADJECTIVES = (
    "Silent", "Golden", "Hidden", "Broken", "Electric", "Crimson", "Gentle", "Wild",
    "Distant", "Frozen", "Bright", "Secret", "Lucky", "Midnight", "Rapid", "Quiet",
)  # fmt: skip
_NOUNS = (
    "Garden", "Engine", "River", "Lantern", "Harbor", "Canyon", "Signal", "Orchard",
    "Compass", "Mirror", "Voyage", "Castle", "Market", "Meadow", "Circuit", "Bridge",
)  # fmt: skip
_THEMES = (
    "Space", "Mystery", "Jazz", "Kitchen", "Travel", "Sport", "History", "Ocean",
    "Comedy", "Forest", "City", "Dragon",
)  # fmt: skip


def generate(
    n_users: int = 200,
    n_items: int = 300,
    n_interactions: int = 5000,
    n_genres: int = 8,
    start: str = "2024-01-01",
    days: int = 60,
    impressions: bool = True,
    seed: int = 0,
) -> PersonalizeData:
    """Draw a dataset: items (ITEM_ID, GENRES, PRICE, CREATION_TIMESTAMP, TITLE), users
    (USER_ID, SEGMENT) and ``n_interactions`` interactions in time order (USER_ID, ITEM_ID,
    TIMESTAMP, EVENT_TYPE click/purchase, EVENT_VALUE 1.0 for a click or the price for a purchase,
    and IMPRESSION when ``impressions``). Interactions fall in ``[start, start + days)`` UTC.

    Everything is held in memory; :func:`write_synthetic` streams the same data to CSV files.
    """
    rng = np.random.default_rng(seed)
    world = _World.draw(rng, n_users, n_items, n_interactions, n_genres, start, days)
    blocks = [
        _interactions_table(world, *_draw_block(rng, world, lo, hi, impressions))
        for lo, hi in world.blocks()
    ]
    interactions = pa.concat_tables(blocks).to_pandas()
    if len(blocks) > 1:
        interactions = interactions.sort_values("TIMESTAMP", kind="stable", ignore_index=True)
    return PersonalizeData(
        interactions=interactions,
        items=_items_table(world, 0, n_items).to_pandas(),
        users=_users_table(world, 0, n_users).to_pandas(),
    )


def write_synthetic(
    out_dir: str | Path,
    n_users: int = 200,
    n_items: int = 300,
    n_interactions: int = 5000,
    n_genres: int = 8,
    start: str = "2024-01-01",
    days: int = 60,
    impressions: bool = True,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the dataset :func:`generate` draws as ``items.csv``, ``users.csv`` and
    ``interactions.csv`` under ``out_dir`` (UTF-8, header row), block by block.

    Memory: the per-item and per-user arrays (about 60 bytes each) plus one block of
    :data:`BLOCK_ROWS` interactions (about 150 MB while its slates are drawn), whatever
    ``n_interactions`` is. Each file is written under a temporary name and renamed when
    complete. Returns the paths by dataset type.
    """
    rng = np.random.default_rng(seed)
    world = _World.draw(rng, n_users, n_items, n_interactions, n_genres, start, days)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def items() -> Iterator[pa.Table]:
        for lo in range(0, n_items, WRITE_ROWS):
            yield _items_table(world, lo, min(lo + WRITE_ROWS, n_items))

    def users() -> Iterator[pa.Table]:
        for lo in range(0, n_users, WRITE_ROWS):
            yield _users_table(world, lo, min(lo + WRITE_ROWS, n_users))

    def interactions() -> Iterator[pa.Table]:
        for lo, hi in world.blocks():
            yield _interactions_table(world, *_draw_block(rng, world, lo, hi, impressions))

    paths = {}
    # Items and users draw nothing: writing them first leaves the generator where
    # generate() has it when the interactions start.
    for name, tables in (("items", items()), ("users", users()), ("interactions", interactions())):
        paths[name] = _write_csv(out / f"{name}.csv", tables)
    return {k: paths[k] for k in ("interactions", "items", "users")}


def _write_csv(path: Path, tables: Iterator[pa.Table]) -> Path:
    """Write tables as one CSV: a plain header, then rows unquoted (generated values hold no
    comma, quote or newline; Arrow's writer raises if one ever did)."""
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        with open(tmp, "wb") as f:
            writer = None
            for table in tables:
                if writer is None:
                    f.write((",".join(table.column_names) + "\n").encode("utf-8"))
                    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
                    writer = pacsv.CSVWriter(f, table.schema, write_options=options)
                writer.write_table(table)
            if writer is not None:
                writer.close()
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass
class _World:
    """Everything drawn per item and per user (numbers only); interactions draw from it."""

    start_ts: int
    end_ts: int
    n_genres: int
    item_genres: np.ndarray  # (n_items, n_genres) bool
    price: np.ndarray
    created: np.ndarray  # epoch seconds
    weight: np.ndarray  # popularity × share of the period the item exists
    adjective: np.ndarray  # title words: indices into _ADJECTIVES and _NOUNS
    noun: np.ndarray
    segment: np.ndarray  # index into SEGMENTS
    favourites: np.ndarray  # (n_users, n_genres) bool
    counts: np.ndarray  # interactions per user

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        n_users: int,
        n_items: int,
        n_interactions: int,
        n_genres: int,
        start: str,
        days: int,
    ) -> _World:
        if n_users < 1 or n_items < 1 or n_genres < 1 or days < 1:
            raise ConfigError("n_users, n_items, n_genres and days must all be at least 1")
        if n_interactions < 2 * n_users:
            raise ConfigError(
                f"n_interactions ({n_interactions}) must be at least 2 per user ({2 * n_users})"
            )
        start_ts = int(pd.Timestamp(start, tz="UTC").timestamp())
        end_ts = start_ts + days * DAY

        # Items: genres, price, arrival time, popularity.
        item_genres = _pick_subsets(rng, n_items, n_genres, max_size=3)
        price = np.round(np.maximum(rng.lognormal(mean=3.0, sigma=0.6, size=n_items), 0.99), 2)
        is_old = rng.random(n_items) < OLD_ITEM_SHARE
        is_old[0] = True  # at least one item exists from the start
        created = np.where(
            is_old,
            start_ts - rng.integers(0, 365 * DAY, n_items),
            start_ts + rng.integers(0, days * DAY, n_items),
        ).astype(np.int64)
        popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** ZIPF_EXPONENT
        # Scale by the share of the period an item is available, so late arrivals are not
        # squeezed into a burst: an item's interactions per day follow its popularity.
        available = (end_ts - np.maximum(created, start_ts)) / (end_ts - start_ts)
        weight = popularity * available
        adjective = rng.choice(len(_ADJECTIVES), size=n_items)
        noun = rng.choice(len(_NOUNS), size=n_items)

        # Users: segment (drives activity) and 1–2 favourite genres.
        segment = rng.choice(len(SEGMENTS), size=n_users, p=SEGMENT_SHARES)
        activity = np.asarray(SEGMENT_ACTIVITY)[segment] * rng.lognormal(0.0, 0.5, n_users)
        favourites = _pick_subsets(rng, n_users, n_genres, max_size=2)
        counts = 2 + rng.multinomial(n_interactions - 2 * n_users, activity / activity.sum())
        return cls(
            start_ts, end_ts, n_genres, item_genres, price, created, weight, adjective, noun,
            segment, favourites, counts,
        )  # fmt: skip

    def blocks(self) -> list[tuple[int, int]]:
        """User ranges [lo, hi) of about BLOCK_ROWS interactions each (whole users)."""
        ends = np.cumsum(self.counts)
        out, lo = [], 0
        while lo < len(ends):
            done = ends[lo - 1] if lo else 0
            hi = max(int(np.searchsorted(ends, done + BLOCK_ROWS, side="right")), lo + 1)
            out.append((lo, hi))
            lo = hi
        return out

    def created_sorted(self) -> np.ndarray:
        if not hasattr(self, "_created_sorted"):
            self._created_sorted = np.sort(self.created)
        return self._created_sorted

    def samplers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per genre -1 (any), 0, 1, ...: (candidate items, their draw probabilities)."""
        if not hasattr(self, "_samplers"):
            n_items = len(self.weight)
            out = []
            for g in range(-1, self.n_genres):
                candidates = np.arange(n_items) if g < 0 else np.flatnonzero(self.item_genres[:, g])
                if len(candidates) == 0:  # no item has this genre: fall back to any item
                    candidates = np.arange(n_items)
                out.append((candidates, self.weight[candidates] / self.weight[candidates].sum()))
            self._samplers = out
        return self._samplers


def _draw_block(
    rng: np.random.Generator, world: _World, lo: int, hi: int, impressions: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Interactions of users [lo, hi): (user, item, timestamp, purchase, slates or None), in
    time order (stable).

    Each picks one of the user's favourite genres (or, sometimes, any item) and then an item by
    popularity; its time is uniform over when the item exists.
    """
    user = np.repeat(np.arange(lo, hi), world.counts[lo:hi])
    genre = _pick_member(rng, world.favourites[user])
    genre[rng.random(len(user)) >= AFFINITY] = -1  # -1: any genre
    item = np.empty(len(user), dtype=np.int64)
    for g, (candidates, p) in zip(range(-1, world.n_genres), world.samplers(), strict=True):
        rows = np.flatnonzero(genre == g)
        item[rows] = rng.choice(candidates, size=len(rows), p=p)
    lo_ts = np.maximum(world.created[item], world.start_ts)
    timestamp = lo_ts + (rng.random(len(user)) * (world.end_ts - lo_ts)).astype(np.int64)
    purchase = rng.random(len(user)) < PURCHASE_RATE

    order = np.argsort(timestamp, kind="stable")
    user, item, timestamp, purchase = user[order], item[order], timestamp[order], purchase[order]
    slates = None
    if impressions:
        slates = _slates(rng, item, timestamp, world.weight, world.created, world.created_sorted())
    return user, item, timestamp, purchase, slates


def _ids(prefix: str, index: np.ndarray) -> pa.Array:
    """``prefix + str(index)`` as an Arrow string array; null where ``index`` < 0."""
    numbers = pa.array(index, mask=index < 0) if (index < 0).any() else pa.array(index)
    return pc.binary_join_element_wise(prefix, pc.cast(numbers, pa.string()), "")


def _interactions_table(
    world: _World,
    user: np.ndarray,
    item: np.ndarray,
    timestamp: np.ndarray,
    purchase: np.ndarray,
    slates: np.ndarray | None,
) -> pa.Table:
    columns = {
        "USER_ID": _ids("u", user),
        "ITEM_ID": _ids("i", item),
        "TIMESTAMP": pa.array(timestamp.astype(np.int64)),
        "EVENT_TYPE": pc.if_else(pa.array(purchase), "purchase", "click"),
        "EVENT_VALUE": pa.array(np.where(purchase, world.price[item], 1.0).astype(np.float64)),
    }
    if slates is not None:
        shown = [_ids("i", slates[:, j]) for j in range(slates.shape[1])]
        joined = pc.binary_join_element_wise(
            *shown, "|", null_handling="replace", null_replacement=""
        )
        columns["IMPRESSION"] = pc.utf8_rtrim(joined, characters="|")  # -1 (no item) pads
    return pa.table(columns)


def _items_table(world: _World, lo: int, hi: int) -> pa.Table:
    genres = world.item_genres[lo:hi]
    # GENRES: "|"-joined genre names of each row, formatted once per distinct genre set.
    sets, which = np.unique(genres, axis=0, return_inverse=True)
    names = ["|".join(f"g{g}" for g in np.flatnonzero(row)) for row in sets]
    # TITLE: "Adjective Theme Noun"; the theme word comes from the first genre.
    first_genre = genres.argmax(axis=1)
    key = (world.adjective[lo:hi] * len(_NOUNS) + world.noun[lo:hi]) * world.n_genres + first_genre
    keys, title_of = np.unique(key, return_inverse=True)
    titles = []
    for k in keys.tolist():
        rest, g = divmod(k, world.n_genres)
        a, n = divmod(rest, len(_NOUNS))
        theme = _THEMES[g % len(_THEMES)] + ("" if g < len(_THEMES) else str(g // len(_THEMES)))
        titles.append(f"{_ADJECTIVES[a]} {theme} {_NOUNS[n]}")
    return pa.table(
        {
            "ITEM_ID": _ids("i", np.arange(lo, hi)),
            "GENRES": pa.array(names, pa.string()).take(pa.array(which.ravel())),
            "PRICE": pa.array(world.price[lo:hi].astype(np.float64)),
            "CREATION_TIMESTAMP": pa.array(world.created[lo:hi]),
            "TITLE": pa.array(titles, pa.string()).take(pa.array(title_of.ravel())),
        }
    )


def _users_table(world: _World, lo: int, hi: int) -> pa.Table:
    return pa.table(
        {
            "USER_ID": _ids("u", np.arange(lo, hi)),
            "SEGMENT": pa.array(SEGMENTS, pa.string()).take(pa.array(world.segment[lo:hi])),
        }
    )


def _pick_subsets(rng: np.random.Generator, n: int, n_genres: int, max_size: int) -> np.ndarray:
    """Boolean (n, n_genres) matrix: each row holds 1..max_size distinct genres."""
    sizes = rng.integers(1, min(max_size, n_genres) + 1, size=n)
    ranks = rng.random((n, n_genres)).argsort(axis=1).argsort(axis=1)  # a random permutation
    return ranks < sizes[:, None]


def _pick_member(rng: np.random.Generator, sets: np.ndarray) -> np.ndarray:
    """For each boolean row of ``sets``, the column index of one True entry, uniformly."""
    keys = np.where(sets, rng.random(sets.shape), -1.0)
    return keys.argmax(axis=1)


def _slates(
    rng: np.random.Generator,
    item: np.ndarray,
    timestamp: np.ndarray,
    weight: np.ndarray,
    created: np.ndarray,
    created_sorted: np.ndarray,
) -> np.ndarray:
    """For each interaction, the items shown: (n_rows, max slate size) item indices, -1 padded.

    A slate holds the chosen item at a random position plus 2–7 other items that existed at
    that time, drawn by popularity without replacement.
    """
    n_rows = len(item)
    low, high = SLATE_SIZES
    n_existing = np.searchsorted(created_sorted, timestamp, side="right")  # incl. the chosen
    size = np.minimum(rng.integers(low, high + 1, size=n_rows), n_existing)
    position = (rng.random(n_rows) * size).astype(np.int64)
    others = _draw_others(rng, item, timestamp, weight, created, size - 1)
    # Slot j holds others[j] before the chosen item's position, others[j - 1] after it.
    j = np.arange(high)[None, :]
    source = np.clip(np.where(j < position[:, None], j, j - 1), 0, high - 2)
    slate = np.take_along_axis(others, source, axis=1)
    slate = np.where(j == position[:, None], item[:, None], slate)
    return np.where(j < size[:, None], slate, -1)


def _draw_others(
    rng: np.random.Generator,
    item: np.ndarray,
    timestamp: np.ndarray,
    weight: np.ndarray,
    created: np.ndarray,
    n_other: np.ndarray,
) -> np.ndarray:
    """(n_rows, max slate size - 1) distinct items ≠ the chosen one that existed then, -1 padded.

    Fast path: oversample by popularity with replacement and keep the first distinct valid
    draws. Rows left short (tiny or very skewed catalogues) get an exact draw without
    replacement via Gumbel top-k.
    """
    n_rows, n_items = len(item), len(weight)
    width = SLATE_SIZES[1] - 1
    candidates = rng.choice(n_items, size=(n_rows, 4 * width), p=weight / weight.sum())
    valid = (created[candidates] <= timestamp[:, None]) & (candidates != item[:, None])
    # Drop repeats within a row: after a stable sort, a value equal to its left neighbour.
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates, order, axis=1)
    repeat_sorted = np.zeros_like(valid)
    repeat_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    repeat = np.empty_like(valid)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    keep = valid & ~repeat
    keep &= np.cumsum(keep, axis=1) <= n_other[:, None]
    first = np.argsort(~keep, axis=1, kind="stable")[:, :width]  # kept draws, in draw order
    others = np.where(
        np.take_along_axis(keep, first, axis=1), np.take_along_axis(candidates, first, axis=1), -1
    )
    short = np.flatnonzero(keep.sum(axis=1) < n_other)
    if len(short):
        others[short] = _gumbel_top(rng, item[short], timestamp[short], weight, created, width)
    return np.where(np.arange(width)[None, :] < n_other[:, None], others, -1)


def _gumbel_top(
    rng: np.random.Generator,
    item: np.ndarray,
    timestamp: np.ndarray,
    weight: np.ndarray,
    created: np.ndarray,
    width: int,
) -> np.ndarray:
    """Exact popularity draw without replacement of ``width`` items per row (-1 when too few)."""
    n_rows, n_items = len(item), len(weight)
    out = np.full((n_rows, width), -1, dtype=np.int64)
    take = min(width, n_items)
    chunk = max(1, 2_000_000 // n_items)
    for begin in range(0, n_rows, chunk):
        rows = np.arange(begin, min(begin + chunk, n_rows))
        keys = np.log(weight) + rng.gumbel(size=(len(rows), n_items))
        keys[created[None, :] > timestamp[rows, None]] = -np.inf
        keys[np.arange(len(rows)), item[rows]] = -np.inf
        top = np.argsort(-keys, axis=1, kind="stable")[:, :take]
        top_keys = np.take_along_axis(keys, top, axis=1)
        out[rows, :take] = np.where(np.isfinite(top_keys), top, -1)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m recsys.data.sources.synthetic OUT_DIR [--items N] ...``: write the CSVs."""
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--interactions", type=int, default=5000)
    parser.add_argument("--genres", type=int, default=8)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--no-impressions", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t = time.perf_counter()
    try:
        paths = write_synthetic(
            args.out_dir, args.users, args.items, args.interactions, args.genres, args.start,
            args.days, not args.no_impressions, args.seed,
        )  # fmt: skip
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}: {path} ({path.stat().st_size / 2**20:,.1f} MiB)")
    print(f"written in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
