"""The in-memory form every source produces: Personalize-style data frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DATASET_TYPES = ("interactions", "items", "users")


@dataclass
class PersonalizeData:
    """Interactions (required), items and users in Personalize's column names.

    interactions: ``USER_ID`` (str), ``ITEM_ID`` (str), ``TIMESTAMP`` (int64, epoch seconds),
        ``EVENT_TYPE`` (str), optional ``EVENT_VALUE`` (float64), ``IMPRESSION`` (str, ``|``-joined).
        Rows are in source file order (a stable sort by TIMESTAMP later keeps ties in that order).
    items: ``ITEM_ID`` (str) + metadata columns, or None.
    users: ``USER_ID`` (str) + metadata columns, or None.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        out = {"interactions": self.interactions}
        if self.items is not None:
            out["items"] = self.items
        if self.users is not None:
            out["users"] = self.users
        return out

    def write_csvs(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``interactions.csv`` / ``items.csv`` / ``users.csv`` (UTF-8, header row)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, df in self.frames().items():
            path = out / f"{name}.csv"
            df.to_csv(path, index=False)
            paths[name] = path
        return paths
