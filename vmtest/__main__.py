"""`python3 -m vmtest debian-12`: see vmtest.cli."""
from vmtest.cli import main

raise SystemExit(main())
