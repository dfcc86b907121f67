"""Corpus mode (`python -m realtime.batch`): many recorded videos read with the camera
command's pipeline, in parallel, resumable, into one session folder per video and a
corpus table.

- `inputs`: files, folders and manifest CSVs → `VideoInput`s with collision-free keys.
- `video`: `process_video(task)`, the one per-video function (atomic session folders,
  done records).
- `runners`: worker processes on this machine, or Ray tasks on a cluster.
- `table`: the corpus table (parquet + CSV).
"""
