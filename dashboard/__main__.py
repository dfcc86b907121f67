"""`python -m dashboard [DIR…] [--allow-save] [--face-model PATH] [--max-entries N] [--config FILE]`:
check the launch options, then `streamlit run streamlit_app.py -- …` with them.

A malformed option or dashboard.toml is one line on stderr and exit status 2, before any
server starts. Streamlit's own options go before `--`: `python -m dashboard
--server.port 8502 -- runs recordings`."""

from __future__ import annotations

import sys
from pathlib import Path

from dashboard.config import DashboardError, owner_settings

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        streamlit_args, ours = argv[:cut], argv[cut + 1:]
    else:
        streamlit_args, ours = [], argv
    try:
        settings = owner_settings(ours)
    except DashboardError as exc:
        print(f"python -m dashboard: {exc}", file=sys.stderr)
        return 2
    print(f"dashboard: serving {', '.join(settings.dirs)} (from {settings.source}); "
          f"saving recordings {'on' if settings.allow_save else 'off'}", file=sys.stderr)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *streamlit_args, "--", *ours]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
