"""The NAB corpus folder (data/nab/ in the repo): data files, label windows, scoring profiles, and the
asset id each file gets when it is ingested into a tenant."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import EmsError
from core.names import check_asset_id
from evaluation import nab

WINDOWS_FILE = Path("labels") / "combined_windows.json"
PROFILES_FILE = Path("config") / "profiles.json"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9._:-]")


class CorpusError(EmsError, ValueError):
    """The folder is not a NAB corpus (missing labels, profiles or data files)."""


@dataclass(frozen=True)
class Corpus:
    root: Path
    windows: dict[str, list[list[str]]]  # "<category>/<name>.csv" -> [[start, end], ...]
    profiles: dict[str, nab.Profile]

    @property
    def names(self) -> list[str]:
        return list(self.windows)

    def path(self, name: str) -> Path:
        plain = self.root / name
        return plain if plain.exists() else self.root / f"{name}.gz"

    def read(self, name: str) -> pd.DataFrame:
        """The file as NAB scores it: `timestamp` (naive) and `value`, rows in file order."""
        frame = pd.read_csv(self.path(name))
        return pd.DataFrame({"timestamp": pd.to_datetime(frame["timestamp"], format=TIME_FORMAT),
                             "value": frame["value"].astype(float)})

    def labels(self, name: str, timestamps: pd.Series) -> nab.FileLabels:
        """The file's windows laid over its rows (timestamps compared as integer nanoseconds)."""
        rows = _ns(timestamps)
        windows = [(_ns(pd.Series([pd.Timestamp(a)]))[0], _ns(pd.Series([pd.Timestamp(b)]))[0])
                   for a, b in self.windows[name]]
        return nab.label_file(name, rows, windows)


def load(root: Path, names: list[str] | None = None) -> Corpus:
    """Read the label windows and profiles of the corpus at `root`, optionally keeping only `names`."""
    root = Path(root)
    for part in (WINDOWS_FILE, PROFILES_FILE):
        if not (root / part).is_file():
            raise CorpusError(f"{root} is not a NAB corpus: {part} is missing (expected NAB's layout, e.g. data/nab)")
    windows = json.loads((root / WINDOWS_FILE).read_text())
    if names:
        unknown = [n for n in names if n not in windows]
        if unknown:
            raise CorpusError(f"{', '.join(unknown)} not in {root / WINDOWS_FILE}; names look like "
                              "realKnownCause/nyc_taxi.csv")
        windows = {n: windows[n] for n in names}
    corpus = Corpus(root, windows, nab.profiles_from_config(json.loads((root / PROFILES_FILE).read_text())))
    missing = [n for n in corpus.names if not corpus.path(n).is_file()]
    if missing:
        raise CorpusError(f"{root}: {len(missing)} data file(s) missing, e.g. {missing[0]}(.gz)")
    return corpus


def asset_id(name: str) -> str:
    """`realKnownCause/nyc_taxi.csv` -> `realKnownCause.nyc_taxi` (a valid asset id)."""
    stem = name.removesuffix(".gz").removesuffix(".csv")
    return check_asset_id(_NOT_IN_ID.sub("_", stem.replace("/", ".")))


def _ns(timestamps: pd.Series) -> list[int]:
    return pd.to_datetime(timestamps).to_numpy(dtype="datetime64[ns]").astype(np.int64).tolist()
