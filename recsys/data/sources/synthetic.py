"""A synthetic Personalize-style dataset with the structure recommenders should find.

Items have Zipf-like popularity and 1–3 genres, and arrive over time; each user prefers one or
two genres; every interaction happens after its item exists, and (optionally) records the slate
of items shown with it. Used by tests and benchmarks where MovieLens is too big or too static.
Everything is drawn from one ``numpy.random.default_rng(seed)``, so a seed fixes the dataset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
    """
    if n_users < 1 or n_items < 1 or n_genres < 1 or days < 1:
        raise ConfigError("n_users, n_items, n_genres and days must all be at least 1")
    if n_interactions < 2 * n_users:
        raise ConfigError(
            f"n_interactions ({n_interactions}) must be at least 2 per user ({2 * n_users})"
        )
    rng = np.random.default_rng(seed)
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
    titles = _titles(rng, item_genres)

    # Users: segment (drives activity) and 1–2 favourite genres.
    segment = rng.choice(len(SEGMENTS), size=n_users, p=SEGMENT_SHARES)
    activity = np.asarray(SEGMENT_ACTIVITY)[segment] * rng.lognormal(0.0, 0.5, n_users)
    favourites = _pick_subsets(rng, n_users, n_genres, max_size=2)
    counts = 2 + rng.multinomial(n_interactions - 2 * n_users, activity / activity.sum())

    # Interactions: each picks one of the user's favourite genres (or, sometimes, any item)
    # and then an item by popularity; its time is uniform over when the item exists.
    user = np.repeat(np.arange(n_users), counts)
    genre = _pick_member(rng, favourites[user])
    genre[rng.random(len(user)) >= AFFINITY] = -1  # -1: any genre
    item = np.empty(len(user), dtype=np.int64)
    for g in range(-1, n_genres):
        rows = np.flatnonzero(genre == g)
        candidates = np.arange(n_items) if g < 0 else np.flatnonzero(item_genres[:, g])
        if len(candidates) == 0:  # no item has this genre: fall back to any item
            candidates = np.arange(n_items)
        p = weight[candidates] / weight[candidates].sum()
        item[rows] = rng.choice(candidates, size=len(rows), p=p)
    lo = np.maximum(created[item], start_ts)
    timestamp = lo + (rng.random(len(user)) * (end_ts - lo)).astype(np.int64)
    purchase = rng.random(len(user)) < PURCHASE_RATE

    order = np.argsort(timestamp, kind="stable")
    user, item, timestamp, purchase = user[order], item[order], timestamp[order], purchase[order]
    item_ids = np.array([f"i{i}" for i in range(n_items)], dtype=object)
    user_ids = np.array([f"u{u}" for u in range(n_users)], dtype=object)
    interactions = pd.DataFrame(
        {
            "USER_ID": pd.array(user_ids[user], dtype="str"),
            "ITEM_ID": pd.array(item_ids[item], dtype="str"),
            "TIMESTAMP": timestamp.astype(np.int64),
            "EVENT_TYPE": pd.array(np.where(purchase, "purchase", "click"), dtype="str"),
            "EVENT_VALUE": np.where(purchase, price[item], 1.0).astype(np.float64),
        }
    )
    if impressions:
        slates = _slates(rng, item, timestamp, weight, created)
        shown = pd.DataFrame(np.append(item_ids, "")[slates])  # -1 (no item) → ""
        joined = shown[0].str.cat([shown[c] for c in shown.columns[1:]], sep="|")
        interactions["IMPRESSION"] = joined.str.rstrip("|").astype("str")

    genre_names = np.array([f"g{g}" for g in range(n_genres)], dtype=object)
    items = pd.DataFrame(
        {
            "ITEM_ID": pd.array(item_ids, dtype="str"),
            "GENRES": pd.array(["|".join(genre_names[row]) for row in item_genres], dtype="str"),
            "PRICE": price.astype(np.float64),
            "CREATION_TIMESTAMP": created,
            "TITLE": pd.array(titles, dtype="str"),
        }
    )
    users = pd.DataFrame(
        {
            "USER_ID": pd.array(user_ids, dtype="str"),
            "SEGMENT": pd.array(np.asarray(SEGMENTS)[segment], dtype="str"),
        }
    )
    return PersonalizeData(interactions=interactions, items=items, users=users)


def _pick_subsets(rng: np.random.Generator, n: int, n_genres: int, max_size: int) -> np.ndarray:
    """Boolean (n, n_genres) matrix: each row holds 1..max_size distinct genres."""
    sizes = rng.integers(1, min(max_size, n_genres) + 1, size=n)
    ranks = rng.random((n, n_genres)).argsort(axis=1).argsort(axis=1)  # a random permutation
    return ranks < sizes[:, None]


def _pick_member(rng: np.random.Generator, sets: np.ndarray) -> np.ndarray:
    """For each boolean row of ``sets``, the column index of one True entry, uniformly."""
    keys = np.where(sets, rng.random(sets.shape), -1.0)
    return keys.argmax(axis=1)


def _titles(rng: np.random.Generator, item_genres: np.ndarray) -> list[str]:
    """Titles of the form "Adjective Theme Noun"; the theme word comes from the first genre."""
    first_genre = item_genres.argmax(axis=1)
    adjectives = rng.choice(_ADJECTIVES, size=len(item_genres))
    nouns = rng.choice(_NOUNS, size=len(item_genres))
    themes = [
        _THEMES[g % len(_THEMES)] + ("" if g < len(_THEMES) else str(g // len(_THEMES)))
        for g in first_genre
    ]
    return [f"{a} {t} {n}" for a, t, n in zip(adjectives, themes, nouns, strict=True)]


def _slates(
    rng: np.random.Generator,
    item: np.ndarray,
    timestamp: np.ndarray,
    weight: np.ndarray,
    created: np.ndarray,
) -> np.ndarray:
    """For each interaction, the items shown: (n_rows, max slate size) item indices, -1 padded.

    A slate holds the chosen item at a random position plus 2–7 other items that existed at
    that time, drawn by popularity without replacement.
    """
    n_rows = len(item)
    low, high = SLATE_SIZES
    n_existing = np.searchsorted(np.sort(created), timestamp, side="right")  # incl. the chosen
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
