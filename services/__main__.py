"""``python -m services ROLE --nats URL ...``: one service process (what ``llmtwin up`` starts)."""

from __future__ import annotations

import sys

from services.main import main

sys.exit(main())
