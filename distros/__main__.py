"""`python3 -m distros`: list targets, show one, or show the builds (see distros.main)."""
from distros import main

raise SystemExit(main())
