from __future__ import annotations

from watcher.main import main

raise SystemExit(main())
