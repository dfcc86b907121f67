"""What a killed camera run left behind, made usable: its recordings' temporary files
(`.<name>.<random>.partial.csv|.jsonl|.mp4`, see `affect.files.PendingFile`) that no living
run holds. A CSV/JSONL is cut back to its last whole line; a video (fragmented MP4, see
`realtime.sinks.FRAGMENTED_MP4`) keeps the frames that play. Each becomes
`<name>.recovered-<time it was last written><suffix>` beside the output, never the output's
own name (the next run writes that).

`python -m realtime.cam` does this for its outputs at start-up; by hand:

    python -m realtime.cam --recover --csv out.csv --video-out out.mp4
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from affect.files import orphaned_partials
from realtime.sinks import playable_frames


def _recovered_name(path: Path, tmp: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(tmp.stat().st_mtime))
    name = path.with_name(f"{path.stem}.recovered-{stamp}{path.suffix}")
    n = 2
    while name.exists():
        name = path.with_name(f"{path.stem}.recovered-{stamp}-{n}{path.suffix}")
        n += 1
    return name


def _whole_lines(tmp: Path) -> int:
    """Cut the file back after its last newline; the number of whole lines kept."""
    data = tmp.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        os.truncate(tmp, end)
    return data.count(b"\n", 0, end)


def recover(path: str | os.PathLike) -> list[str]:
    """Recover the orphaned temporary files of the output `path`; one line per file saying
    what became of it."""
    path = Path(path).expanduser()
    said = []
    for tmp in orphaned_partials(path):
        if path.suffix.lower() in (".csv", ".jsonl"):
            lines = _whole_lines(tmp)
            rows = lines - 1 if path.suffix.lower() == ".csv" else lines
            if rows <= 0:
                tmp.unlink()
                said.append(f"{tmp}: a killed run's {path.name} with no whole row; removed")
                continue
            what = f"{rows} rows"
        else:
            frames = playable_frames(tmp, 0)
            if frames == 0:
                tmp.unlink()
                said.append(f"{tmp}: a killed run's {path.name} with no playable frame; removed")
                continue
            what = f"{frames} frames"
        target = _recovered_name(path, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        said.append(f"recovered {target} ({what}) from a killed run's {tmp.name}")
    return said
