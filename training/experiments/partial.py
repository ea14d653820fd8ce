"""Finished batches on disk, so that an interrupted protocol resumes where it stopped.

The full protocol takes hours; the runner keeps its results in memory until the end. With a store,
every batch's outcome (its records and learning curves, and what it cost) is written to
`<out>/partial/<batch key>.json.gz` the moment it finishes, atomically (a temporary file renamed
into place), and `meta.json` beside them says which protocol and worker count they belong to
(the batches, hence the keys, depend on both). A rerun with the same --out loads every finished
batch instead of training it; a different protocol or worker count is refused with the fields
that differ. The final files are built from the batch files alone, so a resumed run writes the
same bytes as an uninterrupted one. `sessions.json` keeps each session's wall time and load
samples, updated after every batch, so the timing of a resumed run covers all of its sessions.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from training.experiments.protocol import Protocol, differences
from training.experiments.runner import Batch, Outcome

FOLDER = "partial"


class PartialMismatchError(Exception):
    """The partial files in --out were written by another protocol or worker count."""


def batch_key(batch: Batch) -> str:
    """A file name for the batch: its job, readable, and a digest of its runs."""
    job = batch.job
    runs = [(run.correlation, run.seed) for run in batch.runs]
    digest = hashlib.sha256(json.dumps(runs).encode()).hexdigest()[:12]
    return f"{job.setting}-{job.study}-{job.model}-lr{job.learning_rate:g}-{digest}"


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class PartialStore:
    """The batch files of one protocol run under `out/partial/`."""

    def __init__(self, out: Path, protocol: Protocol, workers: int) -> None:
        self.folder = out / FOLDER
        meta = {"protocol": protocol.model_dump(mode="json"), "workers": workers}
        meta_path = self.folder / "meta.json"
        if meta_path.exists():
            found = json.loads(meta_path.read_text())
            changed = differences(meta, found)
            if changed:
                listed = "; ".join(
                    f"{field}: {new} (partial files: {old})"
                    for field, (new, old) in changed.items()
                )
                raise PartialMismatchError(
                    f"{self.folder} holds the finished batches of another run ({listed}): "
                    "resume with the same protocol and --workers, or delete that folder to start "
                    "over"
                )
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(meta_path, (json.dumps(meta, indent=2) + "\n").encode())
        self.sessions_path = self.folder / "sessions.json"
        self.sessions: list[dict] = (
            json.loads(self.sessions_path.read_text()) if self.sessions_path.exists() else []
        )
        self.sessions.append({})

    def _path(self, batch: Batch) -> Path:
        return self.folder / f"{batch_key(batch)}.json.gz"

    def has(self, batch: Batch) -> bool:
        return self._path(batch).exists()

    def save(self, batch: Batch, outcome: Outcome) -> None:
        content = {
            "records": outcome.records,
            "curves": outcome.curves,
            "seconds": outcome.seconds,
            "cpu_seconds": outcome.cpu_seconds,
        }
        data = gzip.compress(json.dumps(content).encode(), mtime=0)
        _write_atomically(self._path(batch), data)

    def load(self, batch: Batch) -> Outcome:
        content = json.loads(gzip.decompress(self._path(batch).read_bytes()))
        return Outcome(
            records=content["records"],
            curves=[tuple(row) for row in content["curves"]],
            seconds=content["seconds"],
            cpu_seconds=content["cpu_seconds"],
        )

    def update_session(self, **values: object) -> None:
        """Record this session's progress (wall seconds per phase, load samples) so far."""
        self.sessions[-1].update(values)
        _write_atomically(self.sessions_path, (json.dumps(self.sessions) + "\n").encode())

    def remove(self) -> None:
        """Delete the partial files once the final files hold everything."""
        shutil.rmtree(self.folder)
