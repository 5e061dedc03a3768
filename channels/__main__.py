"""`python3 -m channels`: the channel status (see channels.status)."""
import sys

from channels.status import main

sys.exit(main())
