from __future__ import annotations

from watcher.cli.main import main

raise SystemExit(main())
