"""`python -m notifier migrate|serve`."""

from __future__ import annotations

from funnel_servicekit.cli import service_main
from notifier.app import MIGRATIONS, create_app
from notifier.settings import NotifierSettings

main = service_main(NotifierSettings, create_app, MIGRATIONS)

if __name__ == "__main__":
    main()
