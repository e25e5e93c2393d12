"""The exits of every funnel: where a lead leaves the line, not steps of it.

stage-tracker places them after a funnel's stages (positions n, n+1, n+2), so a report that
takes "all stages" in position order would end on `lost`: a conversion report's default
steps leave them out (they can still be chosen by name).
"""

from __future__ import annotations

EXITS = ("stalled", "lost", "recycled")
